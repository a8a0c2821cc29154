"""A trained run as ``evaluate``, ``predict``, ``export`` and the example sheet read it: :func:`load_run`.

The model comes from ``RUN/model`` (:func:`elope.runs.model_folder.load_model`) with its spec (τ, sides,
box rule, upsampling, margin, normalisation: :attr:`LoadedRun.spec`, stored in ``model.json`` → ``spec``); the
dataset and the splits come from the rest of ``model.json``. A :class:`LoadedRun` is a
:class:`elope.evaluation.predictor.Predictor`, as an exported file is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from elope.data import build_dataset
from elope.data.names import class_name_key
from elope.data.transforms import eval_transform
from elope.device import inference_device
from elope.evaluation.model_predictor import ModelPredictor
from elope.evaluation.outputs import BatchOutputs, Want
from elope.nn.model import ELoPE, Prediction
from elope.runs.layout import MODEL_DIR, TEACHER_DIR
from elope.runs.lock import lock_holder
from elope.runs.model_folder import load_class_means, load_model
from elope.spec import ModelSpec

__all__ = ["LoadedRun", "UnfinishedRunError", "load_run", "resolve_model_dir"]

#: ``dataset.options`` of the run that decide which images a split holds and what their labels are (the
#: others, e.g. ``skip_unreadable``, are the training loop's business, not evaluation's).
_SPLIT_OPTIONS = ("seed", "max_pixels", "annotation_level", "remove_banner", "zero_shot")


class UnfinishedRunError(ValueError):
    """The run has not finished the stages it was started for; the message says which ran."""


@dataclass
class LoadedRun:
    """A trained model with what ``evaluate`` and ``predict`` need from its run folder."""

    model: ELoPE  # (or its compiled copy, elope.deploy.compiled.compile_model)
    meta: dict[str, Any]
    classes: list[str]
    means: Tensor | None  # (C, dim) class means of the embedding loss, None when the run has none
    model_dir: Path

    @property
    def spec(self) -> ModelSpec:
        """τ, sides, box rule, upsampling, margin, normalisation: the model's (``model.json`` → ``spec``, with a
        command's ``--tau`` applied by :func:`load_run`)."""
        return self.model.spec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, images: Tensor, top: int = 1) -> Prediction:
        """:meth:`elope.ELoPE.predict` on normalised crop sources (B, 3, N, N), N = ``spec.crop_source``."""
        return self.model.predict(images, top=top)

    def predictor(self, *, teacher: ELoPE | None = None, tta: str | None = None) -> ModelPredictor:
        """The run's model as a :class:`ModelPredictor` for a pass over a dataset (with its ``teacher``,
        :meth:`load_teacher`, and the test-time augmentation ``tta``)."""
        return ModelPredictor(self.model, self.classes, teacher=teacher, tta=tta)

    def prepare(self, images: Tensor) -> Tensor:
        """A loader's batch on the model's device."""
        return self.predictor().prepare(images)

    def predict_batch(self, images: Tensor, want: Want) -> BatchOutputs:
        """What ``want`` asks of a prepared batch (:meth:`ModelPredictor.predict_batch`)."""
        return self.predictor().predict_batch(images, want)

    def load_teacher(self) -> ELoPE:
        """The run's stage-1 classifier (``RUN/teacher``), the localization module's teacher, in eval mode,
        at the run's τ (its own ``model.json`` holds the recipe's τ from before stage 2)."""
        folder = self.model_dir.parent / TEACHER_DIR
        if not (folder / "model.json").is_file():
            raise FileNotFoundError(
                f"{folder} not found: the run keeps no stage-1 classifier (trained without the classifier "
                "stage, or by an elope that did not keep it), so Table 4's mean-feature-map row cannot be "
                "measured."
            )
        teacher, _ = load_model(folder, tau=self.spec.tau)
        return teacher.to(self.device).eval()

    def load_dataset(
        self, split: str, dataset: str | None = None, root: str | Path | None = None, size: int | None = None
    ) -> Any:
        """``split`` of the run's dataset (or of ``dataset`` at ``root``) with the run's eval transform, at
        ``size`` (default: ``spec.crop_source``, what the one-pass pipeline reads).

        Returns ``(ds, dataset, root)``; raises ValueError when neither the run nor the caller names one.
        """
        own = (dataset is None or dataset == self.meta.get("dataset")) and root is None
        dataset = dataset or self.meta.get("dataset")
        root = root or self.meta.get("root")
        if not dataset or not root:
            raise ValueError(
                f"{self.model_dir / 'model.json'} does not record the dataset: pass --dataset and --root."
            )
        if own and not Path(root).exists():
            raise ValueError(self._moved_root(root))
        if own and split == "val" and self.meta.get("splits", {}).get("val", "?") is None:
            raise ValueError(
                f"the run {self.model_dir.parent} was trained without a validation split (dataset.val_fraction "
                "0: it trained on every training image), so --split val would measure images it was trained "
                "on; evaluate --split test (or train with --set dataset.val_fraction=0.1)"
            )
        transform = eval_transform(size or self.spec.crop_source, self.spec.mean, self.spec.std)
        options = self.split_options(dataset)
        return build_dataset(dataset, root, split, transform=transform, **options), dataset, root

    def trained_on(self, split: str, dataset: str, root: str | Path) -> bool:
        """Whether ``split`` of ``dataset`` at ``root`` holds images this model was trained on: the run's
        own data, and any split but ``test`` (``val`` only when the run trained on ``trainval``, which
        holds it; a run with a validation split trained on ``train`` alone)."""
        own_root = self.meta.get("root")
        if split == "test" or dataset != self.meta.get("dataset") or not own_root:
            return False
        if Path(root).expanduser().resolve() != Path(own_root).expanduser().resolve():
            return False
        return split != "val" or (self.meta.get("splits") or {}).get("train") != "train"

    def split_options(self, dataset: str) -> dict[str, Any]:
        """The run's dataset options that define its splits and labels (its validation share and seed,
        FGVC-Aircraft's annotation level), so ``val`` is the split the run validated on."""
        recipe = (self.meta.get("config") or {}).get("dataset") or {}
        if dataset != recipe.get("name"):
            return {}
        options = {k: v for k, v in (recipe.get("options") or {}).items() if k in _SPLIT_OPTIONS}
        if dataset != "aircraft":
            options = {k: v for k, v in options.items() if k not in ("annotation_level", "remove_banner")}
        if (recipe.get("val_fraction") or 0) > 0:
            options["val_fraction"] = recipe["val_fraction"]
        return options

    def _moved_root(self, root: str | Path) -> str:
        generated = self.model_dir.parent / "data"
        hint = (
            f"the run folder holds its generated data set: pass --root {generated}"
            if (generated / "elope_synthetic.json").is_file()
            else "pass --root with the dataset's new place"
        )
        return (
            f"{self.model_dir / 'model.json'} records the dataset at {root}, which does not exist (the dataset "
            f"or the run folder was moved?): {hint}"
        )

    @property
    def stages_done(self) -> list[str]:
        """The stages the model has been through (``model.json``)."""
        return [str(s) for s in self.meta.get("stages") or []]

    def stages_missing(self) -> list[str]:
        """Stages the run was started for (its ``config.yaml``; else ``model.json``'s recipe) but that are
        not in the model; [] for a finished run (also one whose crop decision chose whole images), a teacher
        folder, and a run of elope 0.1.0."""
        if self.model_dir.name == TEACHER_DIR or "stages" not in self.meta:
            return []
        if (self.meta.get("crop_decision") or {}).get("choice") == "whole":
            return []  # finished: the crop decision made the stage-1 classifier the run's model
        planned = ((self.meta.get("config") or {}).get("train") or {}).get("stages") or []
        config = self.model_dir.parent / "config.yaml"
        if self.model_dir.name == MODEL_DIR and config.is_file():
            with contextlib.suppress(OSError, ValueError, yaml.YAMLError, TypeError, KeyError):
                planned = yaml.safe_load(config.read_text(encoding="utf-8"))["train"]["stages"]
        return [str(s) for s in planned if s not in self.stages_done] if isinstance(planned, list) else []

    def check_finished(self, allow_unfinished: bool = False) -> str | None:
        """Refuse an unfinished run (``allow_unfinished``: return the warning to print instead)."""
        missing = self.stages_missing()
        if not missing:
            return None
        run = self.model_dir.parent
        holder = lock_holder(run)
        why = f"it is still training ({holder})" if holder else "it was stopped, or is still training"
        done = ", ".join(self.stages_done) or "none"
        text = (
            f"{run} is unfinished: stages done {done}; not done {', '.join(missing)} ({why}); its model is "
            f"that of stage {self.stages_done[-1] if self.stages_done else '?'}"
        )
        if allow_unfinished:
            return f"warning: {text} (--allow-unfinished)"
        raise UnfinishedRunError(
            f"{text}. Continue it with `elope train --out {run} --resume`, or pass --allow-unfinished to use "
            "this model"
        )


def resolve_model_dir(run_dir: str | Path) -> Path:
    """``RUN/model`` (the folder written by :func:`elope.runs.model_folder.save_model`); ``RUN`` may be it already."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "not found"
        raise FileNotFoundError(f"run folder {run_dir} {what}: pass the folder written by `elope train`.")
    for candidate in (run_dir / MODEL_DIR, run_dir):
        if (candidate / "model.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"{run_dir / 'model' / 'model.json'} not found: is {run_dir} a run folder written by `elope train` "
        "(training writes RUN/model/ at the end of the last stage)?"
    )


def _check_class_names(meta_file: Path, classes: list[str]) -> None:
    """Refuse two classes of one name (:func:`elope.data.names.class_name_key`): ``predict`` would show the
    name twice and per-class metrics keyed by name would merge them (a model trained before datasets
    refused such names)."""
    seen: dict[str, int] = {}
    for index, name in enumerate(classes):
        other = seen.setdefault(class_name_key(name), index)
        if other != index:
            raise ValueError(
                f"{meta_file} names classes {other} and {index} both {name!r}: its answers would be ambiguous; "
                "give each class its own name in the file's 'classes' list"
            )


def load_run(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    tau: float | None = None,
    crop_source: int | None = None,
) -> LoadedRun:
    """Load ``RUN/model`` with :func:`elope.runs.model_folder.load_model`, in eval mode on ``device``
    (checked first: :func:`elope.device.inference_device`); ``tau`` and ``crop_source`` (a command's
    ``--tau``, ``export --crop-source``) replace the run's in the model's spec."""
    device = inference_device(device)
    model_dir = resolve_model_dir(run_dir)
    model, meta = load_model(model_dir, tau=tau, crop_source=crop_source)
    model = model.to(device).eval()
    num_classes = int(model.classifier.out_features)
    classes = [str(c) for c in meta.get("classes") or [str(i) for i in range(num_classes)]]
    if len(classes) != num_classes:
        raise ValueError(
            f"{model_dir / 'model.json'} lists {len(classes)} classes but the classifier has {num_classes} "
            "outputs: the run folder is inconsistent."
        )
    _check_class_names(model_dir / "model.json", classes)
    means = load_class_means(model_dir, num_classes)
    return LoadedRun(model, meta, classes, None if means is None else means.to(device), model_dir)
