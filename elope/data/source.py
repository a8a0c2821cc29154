"""The crop source for training: the original image in uint8, its colour augmentation applied on the device.

The crop and weighted stages classify crops cut from the original image (Sec. 5), resized to a square
*crop source* of side ``S`` (:func:`elope.data.crop_source_size`, 2 × the classifier input by default).
Building that source in float32 in the DataLoader, as the whole-image stages do at ``image_size``, costs 4×
the pixels, an upsampling resize for every original smaller than ``S``, and 4 bytes a pixel to collate and
copy. Here the work is split where it is cheapest:

* **worker** (:func:`source_transform`): decode (JPEG draft mode down to ``S``), cap each side at ``S``
  (never upsample), flip and rotate at that size, keep ``uint8``, and *draw* the colour jitter and lighting
  noise of :class:`~elope.data.transforms.ToNormalizedTensor` as a 3×4 affine colour map (with the image's
  mean grey level, which the contrast jitter needs). The item is a :class:`SourceImage`.
* **collate** (:class:`SourceCollate`): pad the batch's images into one ``uint8`` tensor (each image's last
  row and column repeated once, so bilinear sampling at the border never mixes in padding), their sizes,
  and the ground-truth boxes scaled into the ``S × S`` frame.
* **device** (:func:`render_sources`): one batched ``roi_align`` resizes every image to ``S × S`` (bilinear
  when upsampling, an average of bilinear samples when shrinking), then one batched matrix product applies
  each image's colour map and the normalisation. Resampling weights sum to one and the colour map is
  affine per pixel, so the two commute: the result is the float pipeline's, without its CPU cost.

The random draws happen in the worker, per item, exactly as in the float pipeline, so exact resume and
DDP sharding (:mod:`elope.sampling`) hold unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import PIL.Image
import torch
from torch import Tensor
from torchvision.ops import roi_align
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .transforms import (
    GREY_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ToNormalizedTensor,
    _check_size,
    _SizedCompose,
)

__all__ = ["SourceBatch", "SourceCollate", "SourceImage", "render_sources", "source_transform"]


class SourceImage(NamedTuple):
    """One training item's source: ``pixels`` uint8 (3, h, w) with h, w <= S, and its drawn colour map
    ``colour`` (3, 4): normalised pixel = ``colour[:, :3] @ x + colour[:, 3]`` for ``x`` in 0..255."""

    pixels: Tensor
    colour: Tensor


class SourceBatch(NamedTuple):
    """A collated batch of :class:`SourceImage`: ``pixels`` uint8 (B, 3, H, W) padded, ``sizes`` (B, 2)
    float32 width and height of each image, ``colour`` (B, 3, 4)."""

    pixels: Tensor
    sizes: Tensor
    colour: Tensor

    def __len__(self) -> int:  # the number of images, as for a tensor batch (the tuple has 3 fields)
        return int(self.pixels.shape[0])


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
        if isinstance(inpt, PIL.Image.Image):
            inpt = F.pil_to_tensor(inpt.convert("RGB") if inpt.mode != "RGB" else inpt)
        if inpt.dtype != torch.uint8:
            raise TypeError(f"the crop source is kept in uint8, got {inpt.dtype}")
        pixels = inpt.as_subclass(Tensor)
        jittered = not params["brightness"] == params["contrast"] == params["saturation"] == 1.0
        mean_grey = (
            float(torch.tensor(GREY_WEIGHTS) @ pixels.float().mean(dim=(1, 2))) / 255.0 if jittered else 0.0
        )
        matrix, bias = self.colour_map(params, mean_grey, 1.0 / 255.0)
        return SourceImage(pixels, torch.cat([matrix, bias[:, None]], dim=1))


def source_transform(
    size: int,
    *,
    rotation: float = 20.0,
    jitter: float = 0.4,
    lighting: float = 0.1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The training transform of the crop stages: :func:`elope.data.train_transform`'s augmentation (Sec.
    6) on the original capped at ``size`` per side, ending in a :class:`SourceImage` for
    :class:`SourceCollate` and :func:`render_sources`. Rotation and flip act before the squash to
    ``size × size`` (on the device), so a rotated non-square original is sheared slightly differently
    from the whole-image pipeline; the distribution of crops is otherwise the same."""
    _check_size(size)
    steps: list[Any] = [CapSize(size), v2.RandomHorizontalFlip()]
    if rotation:
        steps.append(v2.RandomRotation(rotation))
    steps += [v2.ClampBoundingBoxes(), DrawColour(mean, std, lighting=lighting, jitter=jitter)]
    return _SizedCompose(steps, decode_size=size)


class SourceCollate:
    """DataLoader ``collate_fn`` for :class:`SourceImage` items: ``(SourceBatch, labels, boxes)``, the
    boxes scaled from each image's pixels into the ``size × size`` frame :func:`render_sources` returns.

    ``render=True`` renders in the collate already (``(Tensor, labels, boxes)``): for runs on the CPU,
    where the DataLoader workers are the parallel place to do it.
    """

    def __init__(self, size: int, render: bool = False) -> None:
        self.size = int(size)
        self.render = bool(render)

    def __call__(self, batch: Sequence[tuple[SourceImage, int, Tensor]]) -> tuple[Any, Tensor, Tensor]:
        images = [item[0] for item in batch]
        height = max(int(im.pixels.shape[1]) for im in images) + 1
        width = max(int(im.pixels.shape[2]) for im in images) + 1
        pixels = torch.zeros(len(images), 3, height, width, dtype=torch.uint8)
        sizes = torch.empty(len(images), 2)
        for i, im in enumerate(images):
            h, w = im.pixels.shape[1:]
            pixels[i, :, :h, :w] = im.pixels
            pixels[i, :, h, :w] = im.pixels[:, h - 1]  # repeat the last row and column once
            pixels[i, :, : h + 1, w] = pixels[i, :, : h + 1, w - 1]
            sizes[i, 0], sizes[i, 1] = w, h
        boxes = torch.stack([item[2] for item in batch]).to(torch.float32)
        boxes = boxes * (self.size / sizes).repeat(1, 2)
        labels = torch.as_tensor([item[1] for item in batch])
        sources = SourceBatch(pixels, sizes, torch.stack([im.colour for im in images]))
        return (render_sources(sources, self.size) if self.render else sources), labels, boxes


def render_sources(batch: SourceBatch, size: int, device: torch.device | str | None = None) -> Tensor:
    """The normalised float32 crop sources (B, 3, size, size) of a :class:`SourceBatch`, on ``device``.

    One ``roi_align`` (``aligned=True``, adaptive sampling) resizes each image's valid region to
    ``size × size``; one batched matrix product then applies each image's colour map (jitter, lighting and
    the normalisation of :class:`~elope.data.transforms.ToNormalizedTensor`).
    """
    device = batch.pixels.device if device is None else torch.device(device)
    pixels = batch.pixels.to(device, non_blocking=True).float()
    count = pixels.shape[0]
    rois = torch.zeros(count, 5, device=device)
    rois[:, 0] = torch.arange(count, device=device)
    rois[:, 3:] = batch.sizes.to(device)
    resized = roi_align(
        pixels, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    colour = batch.colour.to(device, non_blocking=True)
    out = torch.einsum("bij,bjhw->bihw", colour[:, :, :3], resized)
    return out.add_(colour[:, :, 3, None, None])
