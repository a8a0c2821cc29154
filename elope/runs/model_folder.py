"""The model folder (``RUN/model``, ``RUN/teacher``): ``model.safetensors`` + ``model.json``.

``model.json`` holds ``format``, ``version``, ``model`` (:attr:`elope.ELoPE.config`: the architecture),
``spec`` (the model's spec, :meth:`elope.spec.ModelSpec.to_dict`: τ, sides, box rule, upsampling, margin
and normalisation are stored there and nowhere else) and the run's ``meta`` (``docs/architecture.md``).
Version 3. Older folders load through :func:`model_description`: version 2 kept the spec's values among
the constructor arguments under ``model``; version 1 (elope 0.1.0) kept the crop source and the
normalisation at the top level as well, and copies of τ and the image size there.
"""

from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from elope import writer
from elope.config import Config
from elope.failures import short_repr
from elope.nn.model import ELoPE
from elope.nn.weights import WeightsError, load_state_dict_file, load_weights, non_finite
from elope.runs.layout import CLASS_MEANS_FILE
from elope.spec import IMAGENET_MEAN, IMAGENET_STD, SPEC_FIELDS, ModelSpec

__all__ = [
    "MODEL_META",
    "MODEL_WEIGHTS",
    "load_class_means",
    "load_model",
    "model_description",
    "model_meta",
    "save_model",
    "without_localizer",
    "write_model_folder",
]

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"
_FORMAT = "elope-model"
VERSION = 3  # 2: the spec's values under model; 1: elope 0.1.0 (crop source and normalisation at the top)


def save_model(model: nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write ``path/model.safetensors`` and ``path/model.json`` (model config + ``meta``).

    The JSON file is written last, so a folder with a ``model.json`` always holds complete weights.
    """
    path = Path(path)
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    if bad := non_finite(state):  # never a model that answers NaN
        raise WeightsError(
            f"not saved to {path}: {len(bad)} weight tensor(s) are NaN or infinite ({bad[0]}, ...)"
        )
    writer.make_folder(path)
    with writer.write_with(path / MODEL_WEIGHTS) as tmp:
        save_file(state, tmp)
    info = {
        "format": _FORMAT,
        "version": VERSION,
        "model": dict(model.config),
        "spec": model.spec.to_dict(),
        **(meta or {}),
    }
    writer.write_text(path / MODEL_META, json.dumps(info, indent=2, default=str) + "\n")
    return path


def model_description(meta: dict[str, Any]) -> tuple[dict[str, Any], ModelSpec]:
    """The architecture (the constructor arguments of :class:`elope.ELoPE` beside the spec) and the spec
    a ``model.json`` describes; ValueError when they are not an ELoPE model's.

    Version 3 holds them under ``model`` and ``spec``. Version 2 kept the spec's values among the
    arguments under ``model`` (:meth:`elope.spec.ModelSpec.from_legacy`). A folder of elope 0.1.0
    (version 1) kept the crop source and the normalisation at the top level (and always recorded them);
    its τ and image size are read from ``model``, the copies at the top level are ignored.
    """
    if int(meta.get("version", 1)) >= 3:
        return dict(meta["model"]), ModelSpec.from_dict(meta.get("spec"))  # type: ignore[arg-type]
    flat = dict(meta["model"])
    if int(meta.get("version", 1)) < 2:
        flat.setdefault("crop_source", meta.get("crop_source"))
        flat.setdefault("mean", meta.get("mean") or IMAGENET_MEAN)
        flat.setdefault("std", meta.get("std") or IMAGENET_STD)
    arguments = {k: v for k, v in flat.items() if k not in SPEC_FIELDS}
    return arguments, ModelSpec.from_legacy(flat)


def _check_version(meta_file: Path, version: object) -> None:
    """Refuse a ``model.json`` of a version this elope does not know (a newer elope wrote it: reading it as
    an older layout would load a model that is not the one saved, without a word)."""
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise WeightsError(
            f"{meta_file} is of model format version {version}, newer than this elope reads (versions 1 to "
            f"{VERSION}): upgrade elope (pip install --upgrade elope), or load it with the elope that wrote it"
        )
    raise WeightsError(
        f"{meta_file} has the version {short_repr(version)}, which no elope writes (versions 1 to {VERSION}): "
        "the file is damaged; restore it from the run's checkpoint or a copy"
    )


def load_model(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    tau: float | None = None,
    crop_source: int | None = None,
) -> tuple[ELoPE, dict]:
    """Rebuild a model written by :func:`save_model`; returns ``(model in eval mode, meta)``.

    ``tau`` and ``crop_source`` replace the saved ones in its spec (a command's ``--tau`` or
    ``--crop-source``; the run's τ for its teacher), checked there (a wrong ``--tau`` is named as such, not
    as a damaged ``model.json``): the model is built with that spec.
    """
    path = Path(path)
    meta_file = path / MODEL_META
    if not meta_file.is_file():
        raise WeightsError(
            f"{meta_file} not found: expected a model folder written by `elope train` (RUN/model) "
            "or elope.save_model"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise WeightsError(f"{meta_file} is not valid JSON (line {error.lineno}): {error.msg}") from error
    except (UnicodeDecodeError, OSError) as error:
        raise WeightsError(f"cannot read {meta_file}: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or not isinstance(meta.get("model"), dict):
        raise WeightsError(f"{meta_file} is not an elope model description (a JSON object with format/model)")
    _check_version(meta_file, meta.get("version", 1))
    try:
        arguments, spec = model_description(meta)
    except (TypeError, ValueError) as error:  # a spec missing or out of range (tau: 5)
        raise WeightsError(f"{meta_file}: the spec does not describe an ELoPE model ({error})") from None
    overrides = {"tau": tau, "crop_source": crop_source}
    spec = spec.replace(**{name: value for name, value in overrides.items() if value is not None})
    try:
        model = ELoPE(**arguments, spec=spec)
    except (TypeError, ValueError) as error:  # an unknown entry, or a value out of range
        raise WeightsError(
            f"{meta_file}: the model entry does not describe an ELoPE model ({error})"
        ) from None
    load_weights(model, path / MODEL_WEIGHTS)
    return model.to(device).eval(), meta


def without_localizer(model: ELoPE) -> ELoPE:
    """A shallow copy of ``model`` without its localization module (the same tensors otherwise): what
    ``RUN/model`` holds until the module has been trained, so the pipeline classifies the whole image
    instead of cropping with an untrained module."""
    if model.localizer is None:
        return model
    trimmed = copy.copy(model)
    trimmed._modules = OrderedDict(model._modules)
    trimmed._modules["localizer"] = None
    return trimmed


def model_meta(
    cfg: Config, classes: list[str], splits: dict[str, Any], completed: list[str], localized: bool
) -> dict[str, Any]:
    """What ``model.json`` holds beside the model's config: classes, the data it was trained on, the stages
    done and the resolved recipe (``config``: the recipe as given; its ``model.tau`` is the recipe's
    setting, which ``model.tau_select`` may replace; the model's τ is the one in ``spec``)."""
    return {
        "classes": classes,
        "splits": splits,
        "dataset": cfg.dataset.name,
        # absolute, so `elope evaluate --run RUN` works from any working directory
        "root": str(Path(cfg.dataset.root).resolve()) if cfg.dataset.root else None,
        "stages": list(completed),
        "localized": localized,
        "config": cfg.to_dict(),
    }


def write_model_folder(
    folder: Path, model: nn.Module, meta: dict[str, Any], means: Tensor | None = None
) -> None:
    """Write a model folder (``RUN/model``, ``RUN/teacher``): the class means for nearest-class-mean
    classification when given (else an older means file is removed), then the model (:func:`save_model`)."""
    writer.make_folder(folder)
    means_file = folder / CLASS_MEANS_FILE
    if means is not None:
        with writer.write_with(means_file) as tmp:
            save_file({"means": means.detach().float().contiguous().cpu()}, str(tmp))
    else:
        means_file.unlink(missing_ok=True)
    save_model(model, folder, meta)


def load_class_means(model_dir: Path, num_classes: int) -> Tensor | None:
    """The class means μ (C, dim) saved next to the model; None when the run has none (loss variant none)."""
    path = model_dir / CLASS_MEANS_FILE
    if not path.is_file():
        return None
    tensors = load_state_dict_file(path)  # a truncated or foreign file: WeightsError (a ValueError) naming it
    if "means" not in tensors:
        raise ValueError(
            f"{path} has no tensor 'means' (found {sorted(tensors)}): re-save it from ClassMeanLoss."
        )
    means = tensors["means"].float()
    if means.ndim != 2 or means.shape[0] != num_classes:
        raise ValueError(
            f"{path}: 'means' has shape {tuple(means.shape)}, expected ({num_classes}, embedding_dim) "
            "for this model: the file does not belong to this run."
        )
    return means
