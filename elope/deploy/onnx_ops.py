"""Faster ONNX forms of three steps of the pipeline, the same arithmetic within float rounding (issue 19).

onnxruntime's profiler (``benchmarks/ort_profile.py``, ``docs/results.md``, "Serving") puts the pipeline's
time beyond the plain network in three CPU kernels, worst at the crop source ``elope export`` writes by
default (N = 2 × 448 = 896 px):

* ``Resize`` with ``antialias=1`` (N → 64 px for the localization module): a direct filter loop. With N
  fixed in the graph the antialiased bilinear filter is a constant matrix per axis, so the resize is two
  ``MatMul``\\ s (:func:`antialias_weights`, :func:`resize_as_matmuls`; 4.5× faster at 896 → 64, not faster
  at 448 → 64, so the export uses them from a shrink by 10: ``elope.deploy.export.MATMUL_RESIZE_FROM``).
* ``RoiAlign``: its CPU kernel runs one box on one thread and averages ``ceil(box / 448)²`` bilinear
  samples per output pixel (4 at N = 896). The samples form a product grid, so the crop is separable: rows
  first, then columns, each output pixel a weighted sum of ``2 · ceil(N / 448)`` gathered rows (columns)
  (:func:`separable_roi_align`; 1.6× faster at N = 896 and batch 1, as fast at batch 8; at N ≤ 448, one
  sample per pixel, and on small inputs, the native kernel is faster and is kept).
* the ``peak`` box rule's region growing, traced as h·w - 1 = 195 ``MaxPool`` + ``Mul`` steps: the same
  region is the 8-connected reachability from the peak, the transitive closure of the neighbourhood matrix
  by 8 squarings (:func:`reachable_region`).

:func:`onnx_substitutes` swaps the last two in while ``elope export`` traces for ONNX (``elope.nn`` is not
changed); the export's check against PyTorch (:mod:`elope.deploy.check`) and ``tests/test_deploy_onnx_ops.py``
(against ``torchvision.ops.roi_align`` and ``peak_region`` on random and adversarial inputs) hold them to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import roi_align

__all__ = [
    "FAST_FORMS",
    "SEPARABLE_FROM",
    "antialias_weights",
    "onnx_substitutes",
    "reachable_region",
    "resize_as_matmuls",
    "separable_roi_align",
]


#: Export the faster forms (set to False to export the plain ``Resize`` / ``RoiAlign`` / unrolled forms, which
#: ``benchmarks/export.py --unoptimized`` times side by side).
FAST_FORMS = True
#: Input side from which roi_align is traced as gathers (onnxruntime 1.32, 2 threads: at N = 896 the
#: gathers take 64 ms against RoiAlign's 102 at batch 1 and as long at batch 8; at N = 96 the ~40 small
#: nodes cost more than RoiAlign's 0.7 ms)
SEPARABLE_FROM = 512


# ------------------------------------------------------------------------------- antialiased resize
def antialias_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) float32 weights of ``F.interpolate(mode="bilinear", antialias=True,
    align_corners=False)`` along one axis (PyTorch's and Pillow's filter: a triangle stretched by the
    scale when shrinking, renormalised over the pixels inside the image)."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    weights = np.zeros((size_out, size_in), np.float64)
    for i in range(size_out):
        centre = scale * (i + 0.5)
        low, high = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size_in)
        taps = np.clip(1.0 - np.abs((np.arange(low, high) - centre + 0.5) / support), 0.0, None)
        weights[i, low:high] = taps / taps.sum()
    return weights.astype(np.float32)


def resize_as_matmuls(g: Any, input: Any, size_in: Sequence[int], size_out: Sequence[int]) -> Any:
    """ONNX ``x @ Wxᵀ`` then ``Wy @ ·`` for an antialiased resize of (B, C, H, W) from ``size_in`` (H, W) to
    ``size_out``, both fixed in the graph (the width first: it shrinks the larger operand)."""
    w_y = torch.from_numpy(antialias_weights(int(size_in[0]), int(size_out[0])))
    w_x = torch.from_numpy(np.ascontiguousarray(antialias_weights(int(size_in[1]), int(size_out[1])).T))
    across = g.op("MatMul", input, g.op("Constant", value_t=w_x))
    return g.op("MatMul", g.op("Constant", value_t=w_y), across)


# ---------------------------------------------------------------------------------------- roi_align
def _axis_samples(
    start: Tensor, length: Tensor, pooled: int, size: int, grid_max: int
) -> tuple[Tensor, Tensor]:
    """Rows (or columns) and weights of roi_align's samples along one axis, torchvision's CPU kernel step
    for step: ``(B, pooled, 2 · grid_max)`` indices into the axis and their weights (0 for unused)."""
    bin_size = (length / pooled)[:, None, None]
    grid = torch.clamp(torch.ceil(length / pooled), max=grid_max)[:, None, None]
    count = grid.clamp(min=1)
    p = torch.arange(pooled, dtype=length.dtype, device=length.device)[None, :, None]
    i = torch.arange(grid_max, dtype=length.dtype, device=length.device)[None, None, :]
    at = start[:, None, None] + p * bin_size + (i + 0.5) * bin_size / count
    use = ((at >= -1.0) & (at <= size) & (i < grid)).to(length.dtype) / count
    at = at.clamp(min=0.0)
    low = torch.floor(at)
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    frac = torch.where(edge, torch.zeros_like(at), at - low)
    high = torch.where(edge, low, low + 1)
    index = torch.stack([low, high], dim=-1).flatten(2).long()
    weight = torch.stack([(1.0 - frac) * use, frac * use], dim=-1).flatten(2)
    return index, weight


def separable_roi_align(
    images: Tensor,
    rois: Tensor,
    output_size: Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """``torchvision.ops.roi_align`` as two gathers (rows, then columns) for one box per image in order
    (``rois[:, 0] == arange(B)``, as :func:`elope.nn.crop.crop_and_resize` gives) lying inside the image;
    other calls, crops of at most one sample per pixel (N ≤ output) and inputs under ``SEPARABLE_FROM``
    pixels a side go to ``roi_align`` itself."""
    batch, channels, height, width = images.shape
    out_h, out_w = int(output_size[0]), int(output_size[1])
    grid_h, grid_w = math.ceil(height / out_h), math.ceil(width / out_w)
    small = min(height, width) < SEPARABLE_FROM  # a few dozen small nodes cost more than the kernel there
    if not aligned or sampling_ratio > 0 or spatial_scale != 1.0 or max(grid_h, grid_w) < 2 or small:
        return roi_align(images, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    x1, y1, x2, y2 = rois[:, 1], rois[:, 2], rois[:, 3], rois[:, 4]
    rows, row_w = _axis_samples(y1 - 0.5, y2 - y1, out_h, height, grid_h)
    cols, col_w = _axis_samples(x1 - 0.5, x2 - x1, out_w, width, grid_w)
    b = torch.arange(batch, device=images.device)
    c = torch.arange(channels, device=images.device)
    flat = images.reshape(batch * channels * height, width)
    picked = None  # (C, out_h, B, W): the rows of every image, batch next to width for the column step
    for k in range(rows.shape[2]):
        index = (b[None, None, :] * channels + c[:, None, None]) * height + rows[:, :, k].t()[None]
        part = flat.index_select(0, index.reshape(-1)).reshape(channels, out_h, batch, width)
        part = part * row_w[:, :, k].t()[None, :, :, None]
        picked = part if picked is None else picked + part
    flat = picked.reshape(channels, out_h, batch * width)
    out = None
    for k in range(cols.shape[2]):
        index = cols[:, :, k] + b[:, None] * width
        part = flat.index_select(2, index.reshape(-1)).reshape(channels, out_h, batch, out_w)
        part = part * col_w[:, :, k][None, None]
        out = part if out is None else out + part
    return out.permute(2, 0, 1, 3)


# ------------------------------------------------------------------------------------ peak box rule
def reachable_region(normalised: Tensor, mask: Tensor) -> Tensor:
    """:func:`elope.nn.localization.peak_region` without its h·w - 1 unrolled steps: the cells of ``mask``
    reachable from the peak by 8-connected steps through ``mask`` (the first step from the peak itself),
    by squaring the masked neighbourhood matrix until paths of h·w - 2 further steps are covered."""
    batch, rows, cols = mask.shape
    n = rows * cols
    cells = torch.arange(n, device=mask.device)
    r, c = cells // cols, cells % cols
    near = (((r[:, None] - r[None, :]).abs() <= 1) & ((c[:, None] - c[None, :]).abs() <= 1)).to(
        normalised.dtype
    )
    peak = normalised.reshape(batch, n).argmax(dim=1)
    allowed = mask.reshape(batch, n).to(normalised.dtype)
    region = ((cells[None, :] == peak[:, None]).to(normalised.dtype) @ near).clamp(max=1.0) * allowed
    step = near[None] * allowed[:, :, None] * allowed[:, None, :]
    covered = 1
    while covered < n - 2:
        step = (step @ step).clamp(max=1.0)
        covered *= 2
    return (region[:, None, :] @ step)[:, 0].reshape(batch, rows, cols) > 0


@contextmanager
def onnx_substitutes() -> Iterator[None]:
    """Inside the block, ``crop_and_resize`` and ``heatmap_to_box`` trace through :func:`separable_roi_align`
    and :func:`reachable_region` (their modules' names for ``roi_align`` and ``peak_region`` swapped)."""
    import elope.nn.crop as crop
    import elope.nn.localization as localization

    if not FAST_FORMS:
        yield
        return
    swaps = [(crop, "roi_align", separable_roi_align), (localization, "peak_region", reachable_region)]
    missing = [f"{m.__name__}.{name}" for m, name, _ in swaps if not hasattr(m, name)]
    if missing:
        raise RuntimeError(
            f"elope.deploy.onnx_ops: {', '.join(missing)} no longer exist; update onnx_substitutes"
        )
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    try:
        for module, name, value in swaps:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
