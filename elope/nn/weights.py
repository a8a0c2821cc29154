"""Loading weights safely: safetensors, or torch state dicts with ``weights_only=True``.

A mismatch between a file and the model is an error that lists what differs (missing keys, unexpected
keys, shapes), never a silent partial load.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

__all__ = ["WeightsError", "describe_mismatch", "load_state_dict_file", "load_weights", "non_finite"]

# Classification heads of ImageNet backbones, dropped when a backbone-only state dict is loaded.
_BACKBONE_HEADS = ("fc.", "classifier.", "head.", "last_linear.")


class WeightsError(ValueError):
    """A weights file that can't be read or doesn't fit the model."""


def non_finite(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` that hold a NaN or an infinity."""
    return [
        key
        for key, value in state.items()
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all())
    ]


def _refuse_non_finite(path: Path, state: dict[str, Tensor]) -> dict[str, Tensor]:
    bad = non_finite(state)
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise WeightsError(
            f"{path} holds weights that are not finite (NaN or infinite) in {len(bad)} of {len(state)} "
            f"tensors ({shown}): a model trained to NaN gives meaningless answers; retrain it with a lower "
            "learning rate (stages.<stage>.lr)"
        )
    return state


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file, or a torch file with ``weights_only=True`` (no code is executed).

    A torch file may hold the state dict itself or a checkpoint dict with a ``"model"`` or ``"state_dict"``
    entry.
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"  # a FIFO would block the read
        raise WeightsError(f"weights file {what}: {path}")
    if path.suffix == ".safetensors":
        try:
            return _refuse_non_finite(path, load_file(path))
        except WeightsError:
            raise
        except Exception as error:  # safetensors' SafetensorError (Rust): truncated, empty or another format
            raise WeightsError(
                f"cannot read {path} as a safetensors file ({str(error).strip() or type(error).__name__}): "
                "it is truncated or not in the safetensors format; copy it again or re-save it"
            ) from None
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol": the refusal below says it better
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # never repeats torch's advice to retry with weights_only=False
        from elope.failures import torch_load_message

        raise WeightsError(torch_load_message(path, error, "weights file")) from None
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return _refuse_non_finite(path, {key.removeprefix("module."): value for key, value in data.items()})


def describe_mismatch(model_state: dict[str, Tensor], state: dict[str, Tensor], source: str) -> str | None:
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    shapes = sorted(
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(model_state[key].shape)}"
        for key in set(state) & set(model_state)
        if state[key].shape != model_state[key].shape
    )
    if not (missing or unexpected or shapes):
        return None

    def listing(title: str, items: list[str]) -> str:
        shown = "\n    ".join(items[:10])
        more = f"\n    ... and {len(items) - 10} more" if len(items) > 10 else ""
        return f"\n  {title} ({len(items)}):\n    {shown}{more}" if items else ""

    return (
        f"the weights in {source} do not fit this model"
        + listing("missing in the file", missing)
        + listing("unexpected in the file", unexpected)
        + listing("different shapes", shapes)
        + "\n  Was the file written for another backbone, number of classes or model option?"
    )


def _backbone_state(features: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A backbone network's own state dict under the keys of ``model.features``.

    The classification head is dropped (``fc.*`` and similar, and for a timm network the layers that
    :class:`elope.nn.backbones.TimmFeatures` lists in ``ignored_keys``); a timm network's keys get the
    ``body.`` of that wrapper.
    """
    ignored = (*_BACKBONE_HEADS, *getattr(features, "ignored_keys", ()))
    state = {key: value for key, value in state.items() if not key.startswith(ignored)}
    if hasattr(features, "body"):  # timm networks are wrapped once (elope.nn.backbones.TimmFeatures)
        state = {f"body.{key}": value for key, value in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike[str], strict: bool = True) -> None:
    """Load a whole-model state dict, or a backbone-only one, into an :class:`elope.ELoPE` model.

    A file of a whole ELoPE model has keys ``features.*``, ``classifier.*``, ... Anything else is taken as
    a state dict of the backbone network alone: torchvision's ImageNet ResNet-50, or the full state dict of
    the timm model (``timm.create_model(name).state_dict()``), loaded into ``model.features``; its
    classification head (``fc.*``, ``classifier.*`` and similar) is ignored. (A backbone whose own keys
    start with ``features.``, e.g. timm's DenseNet, is told apart by which reading fits more keys.)

    Raises:
        WeightsError: listing the missing and unexpected keys and the shape mismatches.
    """
    state = load_state_dict_file(path)
    backbone = _backbone_state(model.features, state)
    whole = any(key.startswith("features.") for key in state)
    if whole:
        fits_model = len(state.keys() & model.state_dict().keys())
        whole = fits_model >= len(backbone.keys() & model.features.state_dict().keys())
    if whole:
        target, source = model, f"{path} (whole model)"
    else:
        target, source, state = model.features, f"{path} (backbone only)", backbone
    model_state = target.state_dict()
    problem = describe_mismatch(model_state, state, source)
    if problem and strict:
        raise WeightsError(problem)
    if problem:  # non-strict: load what fits, still never a tensor of the wrong shape
        state = {k: v for k, v in state.items() if k in model_state and v.shape == model_state[k].shape}
    with torch.no_grad():
        target.load_state_dict(state, strict=strict)
