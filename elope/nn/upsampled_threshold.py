"""Which rows and columns of a bilinearly upsampled heatmap lie above τ, without upsampling all of it.

The box of the upsampled heatmap (``heatmap_to_box(..., upsample=True)``, ours) needs only the first and
last pixel row and column holding a pixel above τ, and τ applies to the map min-max normalised over all
its pixels. Bilinear upsampling (``align_corners=False``, as ``F.interpolate``) is separable and piecewise
linear: along one axis an output pixel is ``(1 - λ)·a + λ·b`` of the two source cells around its source
coordinate, with λ growing with the pixel index while those two cells stay the same. On such a run of
pixels a linear function takes its largest and smallest value at the run's two ends, so

* the map's minimum and maximum are among the pixels whose row and column both end a run, and
* a row holds a pixel above τ exactly when one of the pixels of that row at a run-ending column does,

and the same with rows and columns swapped. With the ``peak`` rule the pixels also have to lie within one
cell of the peak's region, a mask that is constant on each cell's block of pixels (nearest upsampling), so
a run there is a run of constant source cells *and* constant block. For an h×w map and an H×W image this
reads H·k + k·W pixels (k ≤ 4·max(h, w) run ends) instead of H·W: at 896 px and a 14×14 map, 100 k instead
of 803 k (upsampling all of it took 2–4 % of a ResNet-50's CPU forward there, issue 17). The arithmetic is
that of upsampling everything, up to float rounding (``tests/test_nn_upsampled_threshold.py`` compares).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bilinear_at", "linear_source", "minmax_range", "nearest_source", "run_ends", "upsampled_hits"]


def minmax_range(maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per (B, h, w) map: its minimum and its range (B, 1, 1), the range clamped at the smallest normal float
    so that a constant map divides safely, and whether the map has any contrast (B,). The min-max
    normalisation of the box step (Sec. 5) is ``(maps - low) / range``."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return low, span.clamp_min(torch.finfo(maps.dtype).tiny), span.flatten() > 0


def linear_source(size_in: int, size_out: int) -> tuple[list[int], list[int], list[float]]:
    """Per output pixel: the two source cells and the weight of the second, as ``F.interpolate``'s bilinear
    mode with ``align_corners=False`` and an explicit size computes them in float32 (source coordinate
    ``(i + 0.5)·size_in/size_out - 0.5``, clamped at 0; the second cell clamped at the last)."""
    scale = torch.as_tensor(size_in, dtype=torch.float32) / size_out  # a traced size is a tensor already
    src = (scale * (torch.arange(size_out, dtype=torch.float32) + 0.5) - 0.5).clamp_min(0.0)
    low = src.floor().long().clamp_max(size_in - 1)
    high = (low + 1).clamp_max(size_in - 1)
    return low.tolist(), high.tolist(), (src - low.float()).clamp(0.0, 1.0).tolist()


def nearest_source(size_in: int, size_out: int) -> list[int]:
    """Per output pixel: its source cell under ``F.interpolate``'s ``nearest`` mode (``floor(i·scale)`` in
    float32, clamped at the last cell)."""
    scale = torch.as_tensor(size_in, dtype=torch.float32) / size_out  # a traced size is a tensor already
    cells = (torch.arange(size_out, dtype=torch.float32) * scale).floor().long().clamp_max(size_in - 1)
    return cells.tolist()


@lru_cache(maxsize=64)
def run_ends(size_in: int, size_out: int, blocks: bool) -> tuple[int, ...]:
    """The output pixels that start or end a run of constant source cells (and, with ``blocks``, of
    constant nearest cell), in increasing order."""
    low, _, _ = linear_source(size_in, size_out)
    block = nearest_source(size_in, size_out) if blocks else [0] * size_out
    ends = {0, size_out - 1}
    for i in range(1, size_out):
        if (low[i], block[i]) != (low[i - 1], block[i - 1]):
            ends.update((i - 1, i))
    return tuple(sorted(ends))


class _Samples(NamedTuple):
    """Output pixels along one axis: their two source cells, weights (1 - λ, λ), and nearest cell."""

    low: Tensor
    high: Tensor
    w0: Tensor
    w1: Tensor
    nearest: Tensor

    def to(self, device: torch.device) -> _Samples:
        return _Samples(*(t.to(device) for t in self))


def _samples(size_in: int, size_out: int, pixels: Sequence[int]) -> _Samples:
    low, high, frac = linear_source(size_in, size_out)
    cells = nearest_source(size_in, size_out)
    with torch.inference_mode(False):  # plain tensors, usable (and cacheable) in and out of inference mode
        weight = torch.tensor([frac[i] for i in pixels], dtype=torch.float32)
        return _Samples(
            torch.tensor([low[i] for i in pixels]),
            torch.tensor([high[i] for i in pixels]),
            1.0 - weight,
            weight,
            torch.tensor([cells[i] for i in pixels]),
        )


@lru_cache(maxsize=64)
def _axis_plan(
    size_in: int, size_out: int, blocks: bool, device: torch.device
) -> tuple[_Samples, _Samples, Tensor]:
    """Every output pixel, the run ends, and the run ends' positions among the output pixels, on ``device``
    (built once per shape and device)."""
    ends = run_ends(size_in, size_out, blocks)
    with torch.inference_mode(False):
        positions = torch.tensor(ends, device=device)
    every, at_ends = _samples(size_in, size_out, range(size_out)), _samples(size_in, size_out, ends)
    return every.to(device), at_ends.to(device), positions


def _bilinear(maps: Tensor, rows: _Samples, cols: _Samples) -> Tensor:
    """``h0·(w0·a + w1·b) + h1·(w0·c + w1·d)`` of the four cells around each sampled pixel: the columns
    first on the map's own rows (small), then the rows."""
    across = cols.w0 * maps.index_select(2, cols.low) + cols.w1 * maps.index_select(2, cols.high)
    return rows.w0[:, None] * across.index_select(1, rows.low) + rows.w1[:, None] * across.index_select(
        1, rows.high
    )


def bilinear_at(maps: Tensor, size: tuple[int, int], rows: Sequence[int], cols: Sequence[int]) -> Tensor:
    """The pixels (rows × cols) of ``F.interpolate(maps[:, None], size, mode="bilinear")[:, 0]`` for (B, h, w)
    float32 maps, without the others: (B, len(rows), len(cols)) (equal to the kernel's pixels up to float
    rounding, a few units in the last place)."""
    rows_in, cols_in = maps.shape[-2:]
    row_samples = _samples(rows_in, size[0], rows).to(maps.device)
    return _bilinear(maps, row_samples, _samples(cols_in, size[1], cols).to(maps.device))


def upsampled_hits(
    maps: Tensor, tau: float, size: tuple[int, int], region: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Rows and columns of the bilinearly upsampled, min-max normalised ``maps`` holding a pixel above τ.

    Args:
        maps: (B, h, w) float32 heatmaps, finite.
        tau: the threshold; a pixel counts when its normalised value is > τ.
        size: (H, W) of the upsampled map.
        region: optional (B, h, w) bool cells; then only pixels within one cell of them count (the
            ``peak`` rule: 3×3 dilation, nearest-upsampled).

    Returns:
        ``row_hit`` (B, H) and ``col_hit`` (B, W) bool, and ``contrast`` (B,) bool: whether the upsampled
        map is not constant. Equal to thresholding ``F.interpolate(maps, size, mode="bilinear")`` whole.
    """
    blocks = region is not None
    all_rows, end_rows, end_row_positions = _axis_plan(maps.shape[1], size[0], blocks, maps.device)
    all_cols, end_cols, _ = _axis_plan(maps.shape[2], size[1], blocks, maps.device)
    # every pixel row at the run-ending columns, and every pixel column at the run-ending rows
    by_row = _bilinear(maps, all_rows, end_cols)  # (B, H, k)
    by_col = _bilinear(maps, end_rows, all_cols)  # (B, k, W)
    # the map's minimum and maximum lie where a run-ending row meets a run-ending column
    low, scale, contrast = minmax_range(by_row.index_select(1, end_row_positions))
    above_row = (by_row - low) / scale > tau
    above_col = (by_col - low) / scale > tau
    if region is not None:
        near = F.max_pool2d(region[:, None].to(maps.dtype), kernel_size=3, stride=1, padding=1)[:, 0] > 0
        above_row = above_row & near.index_select(2, end_cols.nearest).index_select(1, all_rows.nearest)
        above_col = above_col & near.index_select(1, end_rows.nearest).index_select(2, all_cols.nearest)
    return above_row.any(dim=2), above_col.any(dim=1), contrast
