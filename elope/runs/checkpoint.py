"""Atomic training checkpoints and the state needed for an exact resume.

A checkpoint is a plain ``dict`` of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no pickled code is ever executed). It is written to a temporary file in
the same folder, flushed and ``fsync``-ed, then moved over the old file with ``os.replace`` (atomic on
POSIX and Windows), so a crash while saving leaves the previous checkpoint intact. A full disk is reported
as one line naming the file (the previous checkpoint is then still intact: free space and ``--resume``).

What a training checkpoint holds (see ``elope.engine.train``): ``format``, ``stage``, ``epoch``, ``step`` (batches
done in ``epoch``), ``completed`` (finished stages), ``model`` (state dict), ``model_config`` (the
architecture, :attr:`elope.ELoPE.config`), ``model_spec`` (:meth:`elope.spec.ModelSpec.to_dict`),
``criterion`` (the class means buffer of ``ClassMeanLoss``), ``optimizer``, ``scheduler``, ``scaler``,
``best`` (score, epoch and weights of the best epoch on val), ``accum`` (running sums of the epoch),
``rng`` (torch/numpy/python/cuda states, one per process), ``data_seed`` (the data order of epoch ``e`` is
the permutation seeded with ``data_seed + e``), ``metrics_lines`` and ``config``.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elope import writer
from elope.failures import CheckpointError, is_no_space, no_space_message, torch_load_message

FORMAT = "elope-checkpoint-1"


def atomic_save(obj: Any, path: str | Path, *also: str | Path) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the complete new one, never a mix.

    ``also``: more names (same folder) for the same bytes, written once and hard-linked (copied where
    links are not supported); each name is replaced atomically.
    """
    path = Path(path)
    try:
        with writer.open_write(path, "wb") as f:
            torch.save(obj, f)
        for other in also:  # the same bytes under another name (end-of-stage and last.pt)
            with writer.write_with(other) as tmp:
                try:
                    tmp.unlink()
                    os.link(path, tmp)
                except OSError:
                    shutil.copyfile(path, tmp)
    except BaseException as error:
        if is_no_space(error):  # torch reports a full disk as "enforce fail ... unexpected pos"
            raise CheckpointError(no_space_message(path)) from None
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": the refusal below says it better
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any unpickling failure is reported the same way, never with torch's advice
        raise CheckpointError(torch_load_message(path, e, "checkpoint")) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an elope training checkpoint (format {FORMAT})")
    return ckpt


def check_model_config(saved: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint made for another architecture, naming the keys that differ."""
    keys = sorted(set(saved) | set(current))
    diff = [
        f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]
    if diff:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was made for another model architecture:\n  "
            + "\n  ".join(diff)
            + "\nuse the same model settings as that run, or start a new run with another --out"
        )


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)``, its mismatch report raised as a :class:`CheckpointError`."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{what} does not fit this model: {e}") from None


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and python, as weights_only-loadable objects."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


#: What a checkpoint of the same run may hold otherwise: weighted pooling (a stage switches it on), τ
#: (chosen at the end of stage 2), the crop source (``--allow-change`` before the crop stage), and the sides,
#: normalisation and margin (never compared: the recipe's guard compares the recipe).
_NOT_ARCHITECTURE = ("weighted", "image_size", "crop_source", "tau", "mean", "std", "box_margin")


def architecture(config: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The architecture of a model config and spec (a checkpoint before the spec was whole kept the spec's
    values in its config, and no ``model_spec``): the box rule, the upsampling and the localization
    module's input side with the constructor's arguments, without :data:`_NOT_ARCHITECTURE`."""
    merged = {**config, **(spec or {})}
    return {k: v for k, v in merged.items() if k not in _NOT_ARCHITECTURE}


def clone_state(module: torch.nn.Module) -> OrderedDict[str, torch.Tensor]:
    """A CPU copy of ``module``'s state (the best epoch's weights, kept while training goes on)."""
    return OrderedDict((k, v.detach().clone().cpu()) for k, v in module.state_dict().items())
