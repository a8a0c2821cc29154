"""The localization module and the heatmap → box step, Sec. 5 of Hanselmann & Ney, WACV 2020.

The mean over all feature maps of a trained classifier's last convolutional layer is a heatmap of the
object (Fig. 2). A lightweight module — a copy of the backbone's stem and first residual stage, fed the
image resized to 64×64 and closed by a 3×3 convolution to one channel without padding — learns to predict
that heatmap directly (Fig. 3, smooth L1), so the box is known *before* the backbone runs: one pass.

The box is the smallest rectangle holding every cell of the min-max normalised heatmap above τ
(τ = 0.3 on CUB, 0.2 on Cars and Aircraft, Table 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elope.nn.crop import as_height_width

__all__ = ["HEATMAP_TARGETS", "LocalizationModule", "heatmap_loss", "heatmap_to_box", "mean_heatmap"]

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

    def __init__(self, stem: nn.Module, out_channels: int, input_size: int = 64) -> None:
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


def heatmap_to_box(
    heatmaps: Tensor, tau: float, image_size: int | tuple[int, int], *, upsample: bool = False
) -> Tensor:
    """Boxes from heatmaps by min-max normalisation and thresholding at τ (Sec. 5).

    Args:
        heatmaps: (B, 1, h, w) or (B, h, w).
        tau: threshold in [0, 1); a cell belongs to the object when its normalised value is > τ.
        image_size: the image the boxes refer to, as ``(height, width)`` or one int for a square image.
        upsample: resize the heatmap bilinearly to ``image_size`` first, so the box edges fall on pixels
            rather than on cell edges (ours; off by default, as in the authors' release).

    Returns:
        (B, 4) float boxes x1, y1, x2, y2 in pixels of that image.

    By default the heatmap is *not* upsampled, as in the authors' release (``utils.lua``, ``get_bb``: the
    thresholded cells are scaled by image size / map size): cell (i, j) of an h×w map covers the pixels
    [j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h), and the box runs from the outer edge of the first selected
    cell to the outer edge of the last. With ``upsample=True`` every pixel is a cell. A heatmap that is constant (no cell above τ after normalisation)
    or holds a non-finite value gives the whole image.
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must lie in [0, 1), got {tau}")
    if heatmaps.dim() == 4:
        if heatmaps.shape[1] != 1:
            raise ValueError(f"heatmaps must have one channel, got shape {tuple(heatmaps.shape)}")
        heatmaps = heatmaps[:, 0]
    if heatmaps.dim() != 3:
        raise ValueError(f"heatmaps must be (B, 1, h, w) or (B, h, w), got shape {tuple(heatmaps.shape)}")
    height, width = as_height_width(image_size)
    maps = heatmaps.detach().float()
    if upsample:
        maps = F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    _, rows, cols = maps.shape
    finite = torch.isfinite(maps).all(dim=2).all(dim=1)
    maps = torch.where(torch.isfinite(maps), maps, torch.zeros_like(maps))
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    normalised = (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny)
    mask = normalised > tau
    row_hit, col_hit = mask.any(dim=2), mask.any(dim=1)  # (B, h), (B, w)
    valid = finite & (span.flatten() > 0) & row_hit.any(dim=1)

    def first_last(hit: Tensor) -> tuple[Tensor, Tensor]:
        n = hit.shape[1]
        first = hit.int().argmax(dim=1)
        last = n - 1 - hit.flip(1).int().argmax(dim=1)
        return first.to(maps.dtype), (last + 1).to(maps.dtype)

    y1, y2 = first_last(row_hit)
    x1, x2 = first_last(col_hit)
    boxes = torch.stack([x1 * width / cols, y1 * height / rows, x2 * width / cols, y2 * height / rows], dim=1)
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
