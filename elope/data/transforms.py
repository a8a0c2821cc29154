"""The paper's input pipeline as torchvision.transforms.v2 transforms that move boxes with the image.

Training (Sec. 6, "Implementation details", and the authors' Torch7 release): 448×448 input, random
rotation ±20°, horizontal flip, colour jitter 0.4/0.4/0.4 and AlexNet-style PCA lighting noise 0.1.
Testing: resize to 448×448. Both end in :class:`ToNormalizedTensor`, which converts to float32 and
applies colour jitter, lighting noise and the ImageNet normalisation as one affine colour map (one 3×3
matrix product per image): on one CPU thread at 448², ``ColorJitter`` + ``ToTensor`` + ``Normalize``
cost ~8 ms, the fused op ~4 ms.

The resize comes first, so every later operation works on 448² pixels whatever the stored size. The
composed transforms carry ``decode_size``: the datasets of :mod:`elope.data` read it and let libjpeg
decode large JPEGs at a reduced scale that still covers the target size (see :mod:`elope.data.io`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from elope.spec import IMAGENET_MEAN, IMAGENET_STD, crop_source_size, spec_default

__all__ = [
    "GREY_WEIGHTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PCA_EIGVAL",
    "PCA_EIGVEC",
    "CapSize",
    "DrawColour",
    "SourceImage",
    "ToNormalizedTensor",
    "crop_source_size",
    "eval_transform",
    "train_transform",
]


# Principal components of ImageNet RGB pixels in [0, 1] (Krizhevsky et al. 2012; the values used by
# fb.resnet.torch, on which the authors' release builds).
PCA_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
GREY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as fb.resnet.torch
PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _is_plain_tensor(inpt: Any) -> bool:
    return type(inpt) is torch.Tensor


class ToNormalizedTensor(v2.Transform):
    """The photometric stage in one fused op: PIL/uint8/float image -> normalised float32 ``(3, H, W)``.

    ``out = (jitter(x) + lighting - mean) / std`` with ``x`` in [0, 1]:

    * ``jitter > 0``: colour jitter as in fb.resnet.torch, the code base of the authors' release —
      brightness ``b``, contrast ``c`` and saturation ``s`` factors drawn uniformly from
      ``[1 - jitter, 1 + jitter]``; brightness blends with black, contrast with the mean grey level,
      saturation with each pixel's grey level (weights 0.299/0.587/0.114), without clamping in between.
      Without clamping the three operations commute, and together they are one affine colour map
      ``x -> c·b·S·x + (1 - c)·b·mean_grey(x)`` with ``S = s·I + (1 - s)·1·wᵀ``, applied here as a single
      3×3 matrix product fused with the normalisation (~3× cheaper than ``ColorJitter`` + ``ToTensor`` +
      ``Normalize``). ``torchvision``'s ColorJitter differs only by clamping to [0, 1] after each step.
    * ``lighting > 0``: AlexNet-style PCA lighting noise, ``eigvec @ (alpha * eigval)`` with
      ``alpha ~ N(0, lighting)``, a per-channel constant folded into the bias.

    One draw per call (per image). Boxes and other inputs pass through unchanged.
    """

    _transformed_types = (PIL.Image.Image, tv_tensors.Image, _is_plain_tensor)

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        lighting: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        super().__init__()
        if lighting < 0:
            raise ValueError(f"lighting must be >= 0, got {lighting}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.lighting = float(lighting)
        self.jitter = float(jitter)
        self.eigval = torch.tensor(PCA_EIGVAL, dtype=torch.float32)
        self.eigvec = torch.tensor(PCA_EIGVEC, dtype=torch.float32)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        j = self.jitter
        brightness, contrast, saturation = torch.empty(3).uniform_(1 - j, 1 + j).tolist() if j else (1.0,) * 3
        offset = torch.zeros(3)
        if self.lighting:
            offset = self.eigvec @ (torch.randn(3) * self.lighting * self.eigval)
        return {"brightness": brightness, "contrast": contrast, "saturation": saturation, "offset": offset}

    def colour_map(self, params: dict[str, Any], mean_grey: float, scale: float) -> tuple[Tensor, Tensor]:
        """The drawn photometric stage as one affine map ``out = matrix @ x + bias`` of pixel values ``x``.

        ``mean_grey`` is the image's mean luma in [0, 1] (it feeds the contrast blend); ``scale`` converts
        ``x`` to [0, 1] (1/255 for uint8). Returns ``matrix`` (3, 3) and ``bias`` (3,).
        Every step is a per-pixel affine map of the colour, so the map commutes with any resampling whose
        weights sum to one (bilinear resizing, ``roi_align``): :mod:`elope.data.source` applies it after the
        crop, on the device.
        """
        b, c, s = params["brightness"], params["contrast"], params["saturation"]
        bias = (params["offset"] - self.mean) / self.std
        if not self.jittered(params):
            # (x * scale - mean) / std + offset / std  ==  x * (scale / std) + bias
            return torch.diag(scale / self.std), bias
        grey = torch.tensor(GREY_WEIGHTS, dtype=torch.float32)
        saturate = s * torch.eye(3) + (1 - s) * torch.ones(3, 1) * grey  # S = s I + (1 - s) 1 wᵀ
        matrix = (c * b * scale) * saturate / self.std.view(3, 1)  # diag(1/std) · c b S · scale
        return matrix, bias + (1 - c) * b * mean_grey / self.std

    @staticmethod
    def jittered(params: dict[str, Any]) -> bool:
        """Whether the draw changes brightness, contrast or saturation (else the map is per channel)."""
        return not params["brightness"] == params["contrast"] == params["saturation"] == 1.0

    @staticmethod
    def as_tensor(inpt: Any) -> Tensor:
        """A PIL image as a uint8 RGB tensor (3, H, W); tensors pass through."""
        if isinstance(inpt, PIL.Image.Image):
            return F.pil_to_tensor(inpt.convert("RGB") if inpt.mode != "RGB" else inpt)
        return inpt

    @staticmethod
    def luma(x: Tensor) -> float:
        """Mean grey level of a float image (3, H, W), in its own units (weights ``GREY_WEIGHTS``)."""
        return float(torch.tensor(GREY_WEIGHTS) @ x.mean(dim=(1, 2)))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        inpt = self.as_tensor(inpt)
        if inpt.dtype == torch.uint8:
            scale = 1.0 / 255.0
        elif inpt.is_floating_point():
            scale = 1.0
        else:
            raise TypeError(f"ToNormalizedTensor expects uint8 or float images, got {inpt.dtype}")
        x = inpt.to(torch.float32)
        if not self.jittered(params):
            matrix, bias = self.colour_map(params, 0.0, scale)
            out = torch.addcmul(bias.view(3, 1, 1), x, matrix.diagonal().view(3, 1, 1))
            return tv_tensors.Image(out)
        matrix, bias = self.colour_map(params, self.luma(x) * scale, scale)
        out = torch.addmm(bias.view(3, 1), matrix, x.reshape(3, -1)).view_as(x)
        return tv_tensors.Image(out)

    def extra_repr(self) -> str:
        return (
            f"mean={[round(v, 4) for v in self.mean.tolist()]}, std={[round(v, 4) for v in self.std.tolist()]}, "
            f"jitter={self.jitter}, lighting={self.lighting}"
        )


class SourceImage(NamedTuple):
    """One training item's source: ``pixels`` uint8 (3, h, w) with h, w <= S, and its drawn colour map
    ``colour`` (3, 4): normalised pixel = ``colour[:, :3] @ x + colour[:, 3]`` for ``x`` in 0..255."""

    pixels: Tensor
    colour: Tensor


class CapSize(v2.Transform):
    """Shrink each side of an image to at most ``size`` (antialiased), never enlarge it; boxes follow."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        return {
            "target": (min(height, self.size), min(width, self.size)),
            "resize": max(height, width) > self.size,
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["resize"]:
            return inpt
        return self._call_kernel(F.resize, inpt, params["target"], antialias=True)


class DrawColour(ToNormalizedTensor):
    """Keep the image in uint8 and draw its colour jitter and lighting noise as an affine map.

    The draw is :class:`ToNormalizedTensor`'s (same random calls, same order); :func:`render_sources`
    applies it on the device. Returns a :class:`SourceImage`.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        pixels = self.as_tensor(inpt)
        if pixels.dtype != torch.uint8:
            raise TypeError(f"the crop source is kept in uint8, got {pixels.dtype}")
        pixels = pixels.as_subclass(Tensor)
        mean_grey = self.luma(pixels.float()) / 255.0 if self.jittered(params) else 0.0
        matrix, bias = self.colour_map(params, mean_grey, 1.0 / 255.0)
        return SourceImage(pixels, torch.cat([matrix, bias[:, None]], dim=1))


class _SizedCompose(v2.Compose):
    """A ``v2.Compose`` that records the square size it resizes to (``decode_size``) for the datasets."""

    def __init__(self, transforms: Sequence[Any], decode_size: int) -> None:
        super().__init__(list(transforms))
        self.decode_size = decode_size


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (the paper uses 448), got {size!r}")


def train_transform(
    size: int = spec_default("image_size"),
    rotation: float = 20.0,
    jitter: float = 0.4,
    lighting: float = 0.1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    source: bool = False,
) -> v2.Compose:
    """Training augmentation of the paper (Sec. 6): resize to ``size``², flip, rotate, jitter, lighting.

    Args:
        size: square input size (448 in the paper).
        rotation: maximum rotation in degrees (±20). Nearest-neighbour, as torchvision's default: bilinear
            rotation costs 10× more on CPU and makes no visible difference at 448².
        jitter: brightness, contrast and saturation jitter strength (0.4 each), fused with the
            normalisation (see :class:`ToNormalizedTensor`); 0 disables it.
        lighting: standard deviation of the PCA lighting noise (0.1); 0 disables it.

        source: the crop stages' source (:mod:`elope.data.source`): the image capped at ``size`` per side
            (never enlarged) instead of resized to ``size``², kept in uint8, its colour jitter and
            lighting drawn but not applied; the result is a :class:`SourceImage`, for
            :class:`elope.data.source.SourceCollate` and :func:`elope.data.source.render_sources`. Flip and
            rotation then act before the squash to ``size``² (on the device), so a rotated non-square
            original is sheared slightly differently; the draws are the same.

    Accepts a PIL image or a uint8 tensor, optionally with a ``tv_tensors.BoundingBoxes``; returns a
    normalised float32 ``(3, size, size)`` tensor (or a :class:`SourceImage`) and the boxes moved with the
    image, clamped to it.
    """
    _check_size(size)
    first = CapSize(size) if source else v2.Resize((size, size), antialias=True)
    steps: list[Any] = [first, v2.RandomHorizontalFlip()]
    if rotation:
        steps.append(v2.RandomRotation(rotation))
    if source:  # the same draws, in the same order, as ToNormalizedTensor's
        steps += [v2.ClampBoundingBoxes(), DrawColour(mean, std, lighting=lighting, jitter=jitter)]
    else:
        steps += [ToNormalizedTensor(mean, std, lighting=lighting, jitter=jitter), v2.ClampBoundingBoxes()]
    return _SizedCompose(steps, decode_size=size)


def eval_transform(
    size: int = spec_default("image_size"),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Test-time transform of the paper: resize to ``size``×``size`` and normalise."""
    _check_size(size)
    steps = [v2.Resize((size, size), antialias=True), ToNormalizedTensor(mean, std)]
    return _SizedCompose(steps, decode_size=size)
