"""Checks of a recipe that need the network but no data, run before ``elope train`` touches anything.

An unknown backbone name, an unreadable ``--weights`` file, or an input size too small for the backbone's
stride and the K of k-max pooling (Eq. 3), used to surface as a traceback in the first forward pass, after
the dataset was read and the run folder written. :func:`check_model_settings` reads the weights file, builds
the backbone on PyTorch's ``meta`` device (shapes only: no memory, no weights, no download, milliseconds) and
runs one shape-only forward pass at the configured size; when it fails it finds the smallest size that
works and says so.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from elope.config import Config, ConfigError

__all__ = ["check_model_settings", "feature_map_size", "smallest_image_size"]

_LARGEST = 4096  # no search beyond this side


def _meta_features(backbone: str) -> nn.Module:
    """The backbone's feature network on the meta device (an unknown name raises ConfigError)."""
    from elope.nn.backbones import build_backbone

    try:
        with torch.device("meta"):
            return build_backbone(backbone, pretrained=False).features.eval()
    except ValueError as error:  # build_backbone's "unknown backbone ..." names the choices
        raise ConfigError(f"model.backbone (--backbone): {error}") from None


def feature_map_size(features: nn.Module, image_size: int) -> tuple[int, int] | None:
    """``(h, w)`` of the last feature map for a square input of ``image_size``; None if it cannot run."""
    try:
        with torch.no_grad():
            out = features(torch.empty(1, 3, image_size, image_size, device="meta"))
    except (RuntimeError, ValueError):  # e.g. "Output size is too small", "Kernel size can't be greater"
        return None
    if out.dim() != 4:
        return None
    return int(out.shape[-2]), int(out.shape[-1])


def _positions_needed(cfg: Config) -> int:
    return cfg.model.k if cfg.model.pooling == "gkmp" else 1


def _works(features: nn.Module, size: int, needed: int) -> bool:
    hw = feature_map_size(features, size)
    return hw is not None and hw[0] * hw[1] >= needed


def smallest_image_size(features: nn.Module, needed: int, start: int = 16) -> int | None:
    """The smallest square input side >= ``start`` whose last feature map has ``needed`` positions."""
    high = max(start, 32)
    while not _works(features, high, needed):
        if high >= _LARGEST:
            return None
        high = min(2 * high, _LARGEST)
    low = start - 1  # fails (or is below the range)
    while high - low > 1:  # the map only grows with the input
        mid = (low + high) // 2
        if _works(features, mid, needed):
            high = mid
        else:
            low = mid
    return high


def _check_synthetic(cfg: Config) -> None:
    """The procedural set's preset and knobs, when the run generates it (``dataset.synthetic``)."""
    if cfg.dataset.name != "synthetic" or cfg.dataset.root is not None:
        return
    from elope.data.synthetic_knobs import checked_frame, resolve_difficulty

    s = cfg.dataset.synthetic
    knobs = s.model_dump(exclude={"classes", "train", "test", "size", "seed", "difficulty"})
    try:
        checked_frame(s.size, resolve_difficulty(s.difficulty, **knobs).aspect)
    except ValueError as error:
        raise ConfigError(f"dataset.synthetic: {error}") from None


def check_model_settings(cfg: Config) -> dict[str, Any]:
    """Refuse an unknown backbone or an input too small for it, naming the key and the fix.

    Returns ``{"feature_map": (h, w)}`` at ``dataset.image_size``.

    Raises:
        WeightsError: ``model.weights`` cannot be read (missing, truncated, not safetensors, unsafe pickle).
        ConfigError: the backbone is unknown, or ``dataset.image_size`` gives a last feature map with fewer
            than K positions (``model.k``; 1 for ``gmp``/``gap`` pooling). The message gives the smallest
            size that works.
    """
    _check_synthetic(cfg)
    if cfg.model.weights is not None:  # a truncated, foreign or unsafe file: refused before any data is read
        from elope.nn.weights import load_state_dict_file

        load_state_dict_file(cfg.model.weights)
    features = _meta_features(cfg.model.backbone)
    size, needed = cfg.dataset.image_size, _positions_needed(cfg)
    hw = feature_map_size(features, size)
    if hw is not None and hw[0] * hw[1] >= needed:
        return {"feature_map": hw}
    smallest = smallest_image_size(features, needed)
    got = (
        "no feature map" if hw is None else f"a {hw[0]}x{hw[1]} last feature map ({hw[0] * hw[1]} positions)"
    )
    what = (
        f"model.k={needed} (K of k-max pooling) needs {needed}"
        if cfg.model.pooling == "gkmp"
        else "pooling needs 1"
    )
    fix = (
        f"the smallest size that works is {smallest} (--image-size {smallest})"
        if smallest is not None
        else f"no size up to {_LARGEST} works; lower model.k"
    )
    raise ConfigError(
        f"dataset.image_size={size} (--image-size) is too small for {cfg.model.backbone}: it gives {got}, "
        f"but {what}; {fix}"
    )
