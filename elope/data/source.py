"""The crop source for training: the original image in uint8, its colour augmentation applied on the device.

The crop and weighted stages classify crops cut from the original image (Sec. 5), resized to a square
*crop source* of side ``S`` (:func:`elope.data.crop_source_size`, 2 × the classifier input by default).
Building that source in float32 in the DataLoader, as the whole-image stages do at ``image_size``, costs 4×
the pixels, an upsampling resize for every original smaller than ``S``, and 4 bytes a pixel to collate and
copy. Here the work is split where it is cheapest:

* **worker** (:func:`elope.data.train_transform` with ``source=True``): decode (JPEG draft mode down to
  ``S``), cap each side at ``S`` (never upsample), flip and rotate at that size, keep ``uint8``, and *draw*
  the colour jitter and lighting noise of :class:`~elope.data.transforms.ToNormalizedTensor` as a 3×4
  affine colour map (with the image's mean grey level, which the contrast jitter needs). The item is a
  :class:`~elope.data.transforms.SourceImage`.
* **collate** (:class:`SourceCollate`): pad the batch's images into one ``uint8`` tensor (each image's last
  row and column repeated once, so bilinear sampling at the border never mixes in padding), their sizes,
  and the ground-truth boxes scaled into the ``S × S`` frame.
* **device** (:func:`render_sources`): one batched ``roi_align`` resizes every image to ``S × S`` (bilinear
  when upsampling, an average of bilinear samples when shrinking), then one batched matrix product applies
  each image's colour map and the normalisation. Resampling weights sum to one and the colour map is
  affine per pixel, so the two commute: the result is the float pipeline's, without its CPU cost.

The random draws happen in the worker, per item, exactly as in the float pipeline, so exact resume and
DDP sharding (:mod:`elope.engine.sampling`) hold unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from elope.nn.crop import crop_and_resize

from .transforms import SourceImage

__all__ = ["SourceBatch", "SourceCollate", "render_sources"]


class SourceBatch(NamedTuple):
    """A collated batch of :class:`SourceImage`: ``pixels`` uint8 (B, 3, H, W) padded, ``sizes`` (B, 2)
    float32 width and height of each image, ``colour`` (B, 3, 4)."""

    pixels: Tensor
    sizes: Tensor
    colour: Tensor


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

    One ``roi_align`` (:func:`elope.nn.crop.crop_and_resize`: ``aligned=True``, adaptive sampling) resizes each image's valid region to
    ``size × size``; one batched matrix product then applies each image's colour map (jitter, lighting and
    the normalisation of :class:`~elope.data.transforms.ToNormalizedTensor`).
    """
    device = batch.pixels.device if device is None else torch.device(device)
    pixels = batch.pixels.to(device, non_blocking=True).float()
    whole = torch.cat([torch.zeros_like(batch.sizes), batch.sizes], dim=1)  # x1, y1, x2, y2 = 0, 0, w, h
    resized = crop_and_resize(pixels, whole, size)
    colour = batch.colour.to(device, non_blocking=True)
    out = torch.einsum("bij,bjhw->bihw", colour[:, :, :3], resized)
    return out.add_(colour[:, :, 3, None, None])
