"""The one crop of the method (Sec. 5): cut each image at its box and resize, in one batched ``roi_align``.

:meth:`elope.ELoPE.crop` calls it on every pipeline (``docs/architecture.md``); the check of the
localization module at the end of stage 2 cuts its probe crops with it directly
(:mod:`elope.engine.localizer_check`). :func:`resize` is the whole-image fallback of a model without a
localization module (and the classifier-side copy of :meth:`elope.ELoPE.mean_map`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["as_height_width", "crop_and_resize", "like", "resize"]


def as_height_width(size: int | tuple[int, int] | torch.Size) -> tuple[int, int]:
    """``(height, width)`` of a side or a pair."""
    if isinstance(size, int):
        return size, size
    height, width = (int(v) for v in size)
    return height, width


def like(out: Tensor, images: Tensor) -> Tensor:
    """``out`` in the memory format of ``images`` (``roi_align`` and ``interpolate`` return NCHW), so a
    channels_last backbone does not convert crops back in its first convolution."""
    if (
        images.dim() == 4
        and not images.is_contiguous()
        and images.is_contiguous(memory_format=torch.channels_last)
    ):
        return out.contiguous(memory_format=torch.channels_last)
    return out


def resize(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The whole images resized to ``size`` (bilinear, antialiased), in the input's memory format."""
    out = F.interpolate(
        images, size=as_height_width(size), mode="bilinear", align_corners=False, antialias=True
    )
    return like(out, images)


def crop_and_resize(images: Tensor, boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Crop every image of a batch at its box and resize the crop, in one ``roi_align`` call.

    Args:
        images: (B, C, H, W).
        boxes: (B, 4) x1, y1, x2, y2 in pixels of ``images`` (pixel i spans [i, i+1)).
        size: output side, or (height, width).

    Returns:
        (B, C, height, width) crops. Bilinear sampling with ``aligned=True``; when a crop is shrunk,
        ``roi_align`` averages ceil(box/size) samples per output pixel along each axis, which limits aliasing.
    """
    if images.dim() != 4 or boxes.shape != (images.shape[0], 4):
        raise ValueError(
            f"expected images (B, C, H, W) and boxes (B, 4), got {tuple(images.shape)} and {tuple(boxes.shape)}"
        )
    out_h, out_w = as_height_width(size)
    index = torch.arange(images.shape[0], device=images.device, dtype=images.dtype)[:, None]
    rois = torch.cat([index, boxes.to(device=images.device, dtype=images.dtype)], dim=1)
    return roi_align(
        images, rois, output_size=(out_h, out_w), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
