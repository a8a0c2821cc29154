"""The localization module and the heatmap → box step, Sec. 5 of Hanselmann & Ney, WACV 2020.

The mean over all feature maps of a trained classifier's last convolutional layer is a heatmap of the
object (Fig. 2). A lightweight module — a copy of the backbone's stem and first residual stage, fed the
image resized to 64×64 and closed by a 3×3 convolution to one channel without padding — learns to predict
that heatmap directly (Fig. 3, smooth L1), so the box is known *before* the backbone runs: one pass.

The box is the smallest rectangle holding every cell of the min-max normalised heatmap above τ
(τ = 0.3 on CUB, 0.2 on Cars and Aircraft, Table 2): the ``all`` box rule. The ``peak`` rule (ours, the usual
rule of weakly supervised localization) keeps only the connected region of those cells that holds the
heatmap's peak, so a glow on a decoy elsewhere in the frame does not stretch the box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elope.nn.crop import as_height_width
from elope.nn.upsampled_threshold import minmax_range, upsampled_hits
from elope.spec import BOX_RULES, spec_default

__all__ = [
    "BOX_RULES",
    "HEATMAP_TARGETS",
    "LocalizationModule",
    "heatmap_loss",
    "heatmap_to_box",
    "mean_heatmap",
    "peak_region",
]

HEATMAP_TARGETS = ("raw", "standardized")


class LocalizationModule(nn.Module):
    """Predicts the backbone's mean heatmap from a low-resolution copy of the image (Sec. 5).

    Args:
        stem: the backbone's stem and first residual stage (for ResNets: conv1, bn1, relu, maxpool,
            layer1), stride 4, mapping (B, 3, s, s) to (B, out_channels, s/4, s/4).
        out_channels: channels of the stem's output (256 for ResNet-50, 64 for ResNet-18/34).
        input_size: side of the bilinear resize applied first (64 in the paper).

    For ResNet-50 the output is (B, 1, 14, 14): 64 → 16 after the stem, 16 → 14 after the unpadded 3×3
    convolution, matching the 14×14 last feature map of a 448-pixel input. The module has ~228k
    parameters (the paper: "only 220000").

    The resize uses ``antialias=True``: a plain bilinear resize from 448 to 64 pixels reads only 4 of
    every 49 pixels and aliases badly.
    """

    def __init__(
        self, stem: nn.Module, out_channels: int, input_size: int = spec_default("localizer_input")
    ) -> None:
        super().__init__()
        if input_size < 8:
            raise ValueError(f"input_size must be at least 8 pixels, got {input_size}")
        self.input_size = input_size
        self.stem = stem
        self.head = nn.Conv2d(out_channels, 1, kernel_size=3, padding=0)

    def forward(self, images: Tensor) -> Tensor:
        size = (self.input_size, self.input_size)
        if images.shape[-2:] != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        return self.head(self.stem(images))


def mean_heatmap(features: Tensor) -> Tensor:
    """The localization module's training target: the channel mean of the last feature map (Sec. 5).

    (B, D, h, w) → (B, 1, h, w).
    """
    if features.dim() != 4:
        raise ValueError(f"mean_heatmap expects (B, D, h, w) feature maps, got shape {tuple(features.shape)}")
    return features.mean(dim=1, keepdim=True)


def _tracing() -> bool:
    """Whether the code is being traced or compiled: no value-dependent Python branch then."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


def peak_region(normalised: Tensor, mask: Tensor) -> Tensor:
    """The 8-connected region of ``mask`` that holds each map's peak, as one batched tensor computation.

    Args:
        normalised: (B, h, w) heatmaps; the peak is the first cell of the largest value (row-major).
        mask: (B, h, w) bool, the cells above τ; it must hold the peak (it does for ``> τ`` with τ < 1 on
            a min-max normalised map that is not constant).

    Returns:
        (B, h, w) bool. The region grows from the peak by a 3×3 max-pool restricted to ``mask``; a path
        inside a region of n cells is at most n - 1 steps long, so h·w - 1 steps reach every cell. Eager
        code stops once the region no longer grows (checked every h + w steps, the longest path in a
        compact blob); a traced or exported graph runs all h·w - 1 steps (no value-dependent branch), which
        gives the same result.
    """
    batch, rows, cols = mask.shape
    peak = normalised.reshape(batch, rows * cols).argmax(dim=1)
    cells = torch.arange(rows * cols, device=mask.device)
    region = (cells[None, :] == peak[:, None]).reshape(batch, 1, rows, cols).to(normalised.dtype)
    allowed = mask[:, None].to(normalised.dtype)
    check_every = rows + cols
    for step in range(rows * cols - 1):
        grown = F.max_pool2d(region, kernel_size=3, stride=1, padding=1) * allowed
        if (step + 1) % check_every == 0 and not _tracing() and torch.equal(grown, region):
            break
        region = grown
    return region[:, 0] > 0


def _minmax(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Each map scaled to [0, 1] and whether it has any contrast, (B, h, w) and (B,)."""
    low, scale, contrast = minmax_range(maps)
    return (maps - low) / scale, contrast


def _box_from_hits(row_hit: Tensor, col_hit: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """The box around the rows (B, h) and columns (B, w) that hold a selected cell, cell (i, j) spanning
    pixels [j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h); and whether any cell is selected."""
    rows, cols = row_hit.shape[1], col_hit.shape[1]

    def first_last(hit: Tensor) -> tuple[Tensor, Tensor]:
        n = hit.shape[1]
        first = hit.int().argmax(dim=1)
        last = n - 1 - hit.flip(1).int().argmax(dim=1)
        return first.float(), (last + 1).float()

    y1, y2 = first_last(row_hit)
    x1, x2 = first_last(col_hit)
    boxes = torch.stack([x1 * width / cols, y1 * height / rows, x2 * width / cols, y2 * height / rows], dim=1)
    return boxes, row_hit.any(dim=1)


def heatmap_to_box(
    heatmaps: Tensor,
    tau: float,
    frame: int | tuple[int, int] | torch.Size,
    *,
    upsample: bool = False,
    rule: str = "all",
) -> Tensor:
    """Boxes from heatmaps by min-max normalisation and thresholding at τ (Sec. 5).

    Args:
        heatmaps: (B, 1, h, w) or (B, h, w).
        tau: threshold in [0, 1); a cell belongs to the object when its normalised value is > τ. Not
            checked here, on every batch: a model's τ is its spec's, checked once (``elope.spec``).
        frame: the image the boxes refer to, as ``(height, width)`` or one int for a square image.
        upsample: resize the heatmap bilinearly to ``frame`` first, so the box edges fall on pixels
            rather than on cell edges (ours; off by default, as in the authors' release).
        rule: ``all`` (the paper, the release): the box holds every cell above τ; ``peak`` (ours): only the
            8-connected region of cells above τ around the heatmap's peak (:func:`peak_region`). With
            ``upsample`` the region is found on the heatmap's own cells, and the box holds the pixels of the
            upsampled map above τ that lie within one cell of it.

    Returns:
        (B, 4) float boxes x1, y1, x2, y2 in pixels of that image.

    By default the heatmap is *not* upsampled, as in the authors' release (``utils.lua``, ``get_bb``: the
    thresholded cells are scaled by image size / map size): cell (i, j) of an h×w map covers the pixels
    [j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h), and the box runs from the outer edge of the first selected
    cell to the outer edge of the last. With ``upsample=True`` every pixel is a cell (found without
    upsampling the whole map: :func:`elope.nn.upsampled_threshold.upsampled_hits`). A heatmap that is
    constant (no cell above τ after normalisation) or holds a non-finite value gives the whole image.
    """
    if rule not in BOX_RULES:
        raise ValueError(f"unknown box rule {rule!r}; choose one of {BOX_RULES}")
    if heatmaps.dim() == 4:
        if heatmaps.shape[1] != 1:
            raise ValueError(f"heatmaps must have one channel, got shape {tuple(heatmaps.shape)}")
        heatmaps = heatmaps[:, 0]
    if heatmaps.dim() != 3:
        raise ValueError(f"heatmaps must be (B, 1, h, w) or (B, h, w), got shape {tuple(heatmaps.shape)}")
    height, width = as_height_width(frame)
    maps = heatmaps.detach().float()
    finite = torch.isfinite(maps).all(dim=2).all(dim=1)
    maps = torch.where(torch.isfinite(maps), maps, torch.zeros_like(maps))
    normalised, contrast = _minmax(maps)
    mask = normalised > tau
    if rule == "peak":
        mask = peak_region(normalised, mask)
    if upsample:
        region = mask if rule == "peak" else None
        row_hit, col_hit, contrast = upsampled_hits(maps, tau, (height, width), region)
    else:
        row_hit, col_hit = mask.any(dim=2), mask.any(dim=1)
    boxes, hit = _box_from_hits(row_hit, col_hit, height, width)
    valid = finite & contrast & hit
    # built on the host and copied without blocking: `new_tensor` on a GPU copies from pageable memory and
    # then synchronises the stream, stalling the host once per batch
    whole = torch.tensor([0.0, 0.0, float(width), float(height)]).to(boxes.device, non_blocking=True)
    return torch.where(valid[:, None], boxes, whole).to(heatmaps.device)


def _standardize(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    return (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)


def heatmap_loss(pred: Tensor, target: Tensor, target_kind: str = "raw") -> Tensor:
    """The localization module's training loss: smooth L1 between its heatmap and the teacher's (Fig. 3).

    ``raw`` compares the maps as they are (the paper, the authors' ``trainingLoc.lua``). ``standardized``
    (ours) compares each map standardised per image (zero mean, unit standard deviation): the box step
    min-max normalises the heatmap anyway, so only its shape matters, and the raw loss can be lowered by
    learning the target's level while missing its contrast (a flat heatmap, a whole-image box).
    """
    if target_kind not in HEATMAP_TARGETS:
        raise ValueError(f"unknown heatmap target {target_kind!r}; choose one of {HEATMAP_TARGETS}")
    pred, target = pred.float(), target.float()
    if target_kind == "standardized":
        pred, target = _standardize(pred), _standardize(target)
    return F.smooth_l1_loss(pred, target)
