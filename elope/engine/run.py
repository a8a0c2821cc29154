"""The run of ``elope train``: what every stage of the recipe shares.

:class:`Run` (config, run folder, device, processes, model, class-mean loss, data, classes, completed
stages) and its data, :class:`RunData` (the splits, built once per input size: :func:`run_splits`,
:func:`dataset_options`). The model's spec of the recipe is :mod:`elope.engine.run_spec`, the position
inside a stage :mod:`elope.engine.stage_state`, the process's device :mod:`elope.engine.distributed`,
seeding :mod:`elope.engine.sampling`, the label check :mod:`elope.engine.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from elope.config import Config
from elope.data import build_dataset
from elope.data.transforms import eval_transform, train_transform
from elope.engine import distributed as D
from elope.failures import Echo, to_stderr
from elope.nn.losses import EmbeddingLoss
from elope.nn.model import ELoPE
from elope.spec import ModelSpec

__all__ = ["Run", "RunData", "dataset_options", "run_splits"]


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
