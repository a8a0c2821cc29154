"""The run context of ``elope train``: what every stage of the recipe shares.

:class:`Run` (config, run folder, device, processes, model, class-mean loss, data, classes, completed
stages), :class:`RunData` (the splits, built once per input size), :class:`StageState` (the position
inside a stage), and the small helpers every stage calls (device, seeding, label check).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from elope.config import Config
from elope.data import build_dataset
from elope.data.transforms import eval_transform, train_transform
from elope.device import auto_device
from elope.engine import distributed as D
from elope.failures import Echo, TrainingError, to_stderr
from elope.nn.backbones import pretrained_normalization
from elope.nn.losses import EmbeddingLoss, check_label_range
from elope.nn.model import ELoPE
from elope.spec import ModelSpec

__all__ = [
    "Run",
    "RunData",
    "StageState",
    "TrainingError",
    "check_labels",
    "dataset_options",
    "resolve_device",
    "run_spec",
    "run_splits",
    "seed_everything",
]


@dataclass
class Run:
    """Everything the stages share."""

    cfg: Config
    out: Path
    device: torch.device
    dist: D.DistInfo
    model: ELoPE  # its spec: τ, image size, crop source, normalisation (run_spec, then stage 2's τ)
    criterion: EmbeddingLoss | None  # a loss of elope.nn.losses.LOSSES, None for loss.variant "none"
    data: RunData
    classes: list[str]
    completed: list[str] = field(default_factory=list)
    writer: Any = None  # TensorBoard's SummaryWriter (main process)
    echo: Echo = to_stderr  # where progress lines and warnings go (the commands pass click.echo)

    @property
    def main(self) -> bool:
        return self.dist.is_main

    @property
    def localized(self) -> bool:
        """Whether the localization module has been trained (crop stages then classify crops)."""
        return "localizer" in self.completed

    @property
    def train_set(self) -> Any:
        """The training split at the classifier's input size (its length is every stage's)."""
        return self.data.get("train", self.model.spec.image_size)


@dataclass
class RunData:
    """The run's training and validation splits, each built once per input size it is needed at.

    Stages that classify whole images (and the localizer's stage) read them at ``spec.image_size``;
    stages that classify crops read the crop source (``spec.crop_source``). Images are normalised with the
    spec's mean and std.
    """

    cfg: Config
    splits: dict[str, str | None]  # "train" / "val" -> the dataset split used (None: no validation)
    spec: ModelSpec  # only its normalisation is read here (sizes come with each call)
    built: dict[tuple[str, int, bool, bool], Any] = field(default_factory=dict)

    def get(self, role: str, size: int, *, source: bool = False, plain: bool = False) -> Any:
        """The split of ``role`` read at ``size``; ``source=True`` (training crop stages) yields uint8
        :class:`elope.data.transforms.SourceImage` items, rendered on the device by
        :func:`elope.data.source.render_sources`; ``plain=True`` reads it without augmentation (the
        check of the localization module at the end of stage 2)."""
        split = self.splits[role]
        if split is None:
            return None
        key = (role, size, source, plain)
        if key not in self.built:
            d = self.cfg.dataset
            mean, std = self.spec.mean, self.spec.std
            augment = {
                "rotation": d.augment.rotation,
                "jitter": d.augment.jitter,
                "lighting": d.augment.lighting,
            }
            if source:
                transform = train_transform(size, **augment, mean=mean, std=std, source=True)
            elif role == "train" and not plain:
                transform = train_transform(size, **augment, mean=mean, std=std)
            else:
                transform = eval_transform(size, mean, std)
            self.built[key] = build_dataset(
                d.name, d.root, split, transform=transform, **dataset_options(self.cfg)
            )
        return self.built[key]

    def sizes(self) -> dict[str, dict[str, Any] | None]:
        """Split name and image count of each role (recorded in ``model.json`` and ``metrics.jsonl``)."""
        size = self.spec.image_size
        return {
            role: None if split is None else {"split": split, "images": len(self.get(role, size))}
            for role, split in self.splits.items()
        }


def run_spec(cfg: Config) -> ModelSpec:
    """The model's spec of a recipe, resolved once when the run is configured: ``dataset.image_size``,
    ``dataset.crop_source`` (:func:`elope.spec.crop_source_size`), ``model.tau`` (which the end of stage 2
    may replace, ``model.tau_select``) and the normalisation the backbone's initial weights expect
    (ImageNet's for ResNets, 0.5/0.5 for the EfficientNet-Lite weights)."""
    normalization = pretrained_normalization(cfg.model.backbone)
    d = cfg.dataset
    return ModelSpec.resolve(
        d.image_size,
        cfg.model.tau,
        d.crop_source,
        box_margin=cfg.model.box_margin,
        default_normalization=normalization,
    )


def dataset_options(cfg: Config) -> dict[str, Any]:
    """``build_dataset`` options of a recipe: ``dataset.options`` plus the validation share."""
    options = dict(cfg.dataset.options)
    if cfg.dataset.val_fraction > 0:
        options["val_fraction"] = cfg.dataset.val_fraction
    return options


def run_splits(cfg: Config) -> dict[str, str | None]:
    """``trainval`` without validation (the paper's models); ``train``/``val`` with ``val_fraction > 0``."""
    if cfg.dataset.val_fraction > 0:
        return {"train": "train", "val": "val"}
    return {"train": "trainval", "val": None}


@dataclass
class StageState:
    """Position inside a stage plus what the epoch has summed so far (all processes together)."""

    stage: str
    epoch: int = 0  # epochs finished
    step: int = 0  # local batches done inside ``epoch``
    best: dict[str, Any] | None = None  # {"score", "epoch", "model", "criterion"}
    accum: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str, dist: D.DistInfo) -> torch.device:
    """``train.device`` as this process's device: ``auto`` (:func:`elope.device.auto_device`) or
    ``cuda`` → the process's GPU (its local rank), ``cuda:N`` → that GPU; refused without CUDA."""
    name = auto_device(name)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else dist.local_rank
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_labels(labels: Tensor, num_classes: int) -> None:
    """Labels must index a class (:func:`elope.nn.losses.check_label_range`); checked on the CPU tensor the
    loader yields (no device synchronisation), so an out-of-range label is a clear error instead of a CUDA
    scatter assertion."""
    try:
        check_label_range(labels, num_classes)
    except ValueError as error:
        raise TrainingError(f"{error}: the dataset's class list and its labels disagree") from None
