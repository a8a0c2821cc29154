"""A trained run as ``evaluate``, ``predict``, ``export`` and the example sheet read it: :func:`load_run`.

The model comes from ``RUN/model`` (:func:`elope.runs.model_folder.load_model`); τ and the classifier's
input size are the saved model config's; the crop source, the normalisation and the dataset come from the
rest of ``model.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from elope.data import build_dataset
from elope.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from elope.runs.layout import MODEL_DIR, TEACHER_DIR
from elope.runs.model_folder import load_class_means, load_model

__all__ = ["LoadedRun", "load_run", "resolve_model_dir"]


@dataclass
class LoadedRun:
    """A trained model with what ``evaluate`` and ``predict`` need from its run folder."""

    model: torch.nn.Module
    meta: dict[str, Any]
    classes: list[str]
    means: Tensor | None  # (C, dim) class means of the embedding loss, None when the run has none
    model_dir: Path

    @property
    def tau(self) -> float:
        """The run's box threshold τ: the saved model config's (``model.json`` → ``model.tau``)."""
        return float(self.model.tau)

    @property
    def image_size(self) -> int:
        """The classifier's input side: the saved model config's (``model.json`` → ``model.image_size``)."""
        return int(self.model.image_size)

    @property
    def crop_source(self) -> int:
        """Side of the images the crops are cut from (runs before it was recorded cropped at image_size)."""
        return int(self.meta.get("crop_source") or self.image_size)

    def load_teacher(self) -> torch.nn.Module:
        """The run's stage-1 classifier (``RUN/teacher``), the localization module's teacher, in eval mode."""
        folder = self.model_dir.parent / TEACHER_DIR
        if not (folder / "model.json").is_file():
            raise FileNotFoundError(
                f"{folder} not found: the run keeps no stage-1 classifier (trained before elope 0.2, or "
                "without the classifier stage), so Table 4's mean-feature-map row cannot be measured."
            )
        teacher, _ = load_model(folder)
        return teacher.to(next(self.model.parameters()).device).eval()

    @property
    def normalization(self) -> tuple[Sequence[float], Sequence[float]]:
        """The ``(mean, std)`` the run's images were normalised with (ImageNet's unless recorded)."""
        return self.meta.get("mean") or IMAGENET_MEAN, self.meta.get("std") or IMAGENET_STD

    def load_dataset(
        self, split: str, dataset: str | None = None, root: str | Path | None = None, size: int | None = None
    ) -> Any:
        """``split`` of the run's dataset (or of ``dataset`` at ``root``) with the run's eval transform, at
        ``size`` (default: the crop source, what the one-pass pipeline reads).

        Returns ``(ds, dataset, root)``; raises ValueError when neither the run nor the caller names one.
        """
        dataset = dataset or self.meta.get("dataset")
        root = root or self.meta.get("root")
        if not dataset or not root:
            raise ValueError(
                f"{self.model_dir / 'model.json'} does not record the dataset: pass --dataset and --root."
            )
        transform = eval_transform(size or self.crop_source, *self.normalization)
        return build_dataset(dataset, root, split, transform=transform), dataset, root


def resolve_model_dir(run_dir: str | Path) -> Path:
    """``RUN/model`` (the folder written by :func:`elope.runs.model_folder.save_model`); ``RUN`` may be it already."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found: pass the folder written by `elope train`.")
    for candidate in (run_dir / MODEL_DIR, run_dir):
        if (candidate / "model.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"{run_dir / 'model' / 'model.json'} not found: is {run_dir} a run folder written by `elope train` "
        "(training writes RUN/model/ at the end of the last stage)?"
    )


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load ``RUN/model`` with :func:`elope.runs.model_folder.load_model`, in eval mode on ``device``."""
    model_dir = resolve_model_dir(run_dir)
    model, meta = load_model(model_dir)
    model = model.to(device).eval()
    num_classes = int(model.classifier.out_features)
    classes = [str(c) for c in meta.get("classes") or [str(i) for i in range(num_classes)]]
    if len(classes) != num_classes:
        raise ValueError(
            f"{model_dir / 'model.json'} lists {len(classes)} classes but the classifier has {num_classes} "
            "outputs: the run folder is inconsistent."
        )
    means = load_class_means(model_dir, num_classes)
    return LoadedRun(model, meta, classes, None if means is None else means.to(device), model_dir)
