"""The one crop of the method (Sec. 5): cut each image at its box and resize, in one batched ``roi_align``.

Where every box is at most the output's size (the crop source no larger than the classifier's input), each
output pixel is one bilinear sample and the same crop is a ``grid_sample`` (:func:`resample_boxes`), 4× faster
than torchvision's CPU kernel at 448 px (issue 17); eager CPU code takes it, traced (exported) and compiled
graphs and other devices keep ``roi_align``.

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

__all__ = ["as_height_width", "crop_and_resize", "expand_boxes", "like", "resample_boxes", "resize"]


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


def expand_boxes(boxes: Tensor, margin: float, frame: int | tuple[int, int] | torch.Size) -> Tensor:
    """Each box grown by ``margin`` times its own width (height) on the left and right (top and bottom),
    then clipped to the image of ``frame`` = (H, W): the crop's box with ``spec.box_margin`` (ours; the paper
    crops at the box). A box-relative margin keeps what a tight box cuts at the object's extremities (the
    crest, the tail) whatever the object's size; ``margin`` 0 returns ``boxes`` unchanged.

    Args:
        boxes: (B, 4) x1, y1, x2, y2 in pixels.
        margin: share of the box's side added on each side, in [0, 1] (:func:`elope.spec.check_box_margin`).
        frame: the image the boxes refer to, ``(height, width)`` or one int.
    """
    if margin == 0:
        return boxes
    height, width = as_height_width(frame)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    return torch.stack(
        [(x1 - dx).clamp(min=0.0), (y1 - dy).clamp(min=0.0), (x2 + dx).clamp(max=float(width)),
         (y2 + dy).clamp(max=float(height))],
        dim=1,
    )  # fmt: skip


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
    height, width = images.shape[-2:]
    # eager only: a traced (exported) or compiled graph keeps roi_align (and no value-dependent branch)
    graph = torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
    if height <= out_h and width <= out_w and images.device.type == "cpu" and not graph:
        return resample_boxes(images, boxes, (out_h, out_w))
    index = torch.arange(images.shape[0], device=images.device, dtype=images.dtype)[:, None]
    rois = torch.cat([index, boxes.to(device=images.device, dtype=images.dtype)], dim=1)
    return roi_align(
        images, rois, output_size=(out_h, out_w), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )


def _sample_positions(start: Tensor, end: Tensor, count: int, size: int) -> tuple[Tensor, Tensor]:
    """``roi_align``'s one sample per bin along an axis (``aligned=True``: bin centres of [start, end) shifted
    by half a pixel), as ``grid_sample`` coordinates (``align_corners=False``), and whether ``roi_align``
    reads it (a sample beyond one pixel outside the image, or of an empty box, is 0 there)."""
    start, end = start.double(), end.double()
    fraction = (torch.arange(count, dtype=torch.float64, device=start.device) + 0.5) / count
    pixel = start[:, None] - 0.5 + fraction[None] * (end - start)[:, None]  # (B, count)
    read = (pixel >= -1.0) & (pixel <= size) & (end > start)[:, None]
    return ((2.0 * pixel + 1.0) / size - 1.0).float(), read


def resample_boxes(images: Tensor, boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """``crop_and_resize`` for boxes no larger than ``size``: one bilinear sample per output pixel, at the
    positions ``roi_align(..., sampling_ratio=-1, aligned=True)`` samples, by ``F.grid_sample`` (border
    padding: a sample up to one pixel outside the image reads the edge pixel, as ``roi_align`` clamps it).
    Larger boxes are averaged over several samples by ``roi_align``; use :func:`crop_and_resize`."""
    out_h, out_w = as_height_width(size)
    batch, _, height, width = images.shape
    boxes = boxes.to(images.device)
    gx, read_x = _sample_positions(boxes[:, 0], boxes[:, 2], out_w, width)
    gy, read_y = _sample_positions(boxes[:, 1], boxes[:, 3], out_h, height)
    grid = torch.stack(
        [gx[:, None, :].expand(batch, out_h, out_w), gy[:, :, None].expand(batch, out_h, out_w)], -1
    )
    out = F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )
    if bool(read_x.all()) and bool(read_y.all()):  # eager-only path: the usual case, every sample read
        return out
    return out * (read_y[:, None, :, None] & read_x[:, None, None, :]).to(out.dtype)
