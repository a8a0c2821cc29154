"""The localization metrics of weakly supervised object localization (WSOL), for class-agnostic heatmaps.

Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right" (CVPR 2020), Sec. 3-4, for
images ``n`` with a heatmap ``s_n`` and a ground-truth box ``B_n``:

* **GT-known localization accuracy**: the share of images whose box has IoU >= 0.5 with ``B_n``. In WSOL
  the heatmap is drawn for the ground-truth class ("known"); elope's heatmaps (the localization module's,
  the mean feature map) depend on no class, so this is Table 4's criterion as it is, ``loc_iou50``.
* **Top-1 localization accuracy**: the share of images whose top-1 class is right *and* whose box has
  IoU >= 0.5 (:func:`top1_loc_hits`).
* **MaxBoxAccV2**: ``BoxAcc(τ, δ) = 1/N Σ_n 1[max_k IoU(b_k(s_n, τ), B_n) >= δ]``, where ``b_k(s_n, τ)``
  are the tight boxes around *every* connected component of ``{s_n > τ}`` (the best match is taken: V2;
  V1 kept the largest component); ``MaxBoxAcc(δ) = max_τ BoxAcc(τ, δ)`` and ``MaxBoxAccV2 =
  mean over δ ∈ {0.3, 0.5, 0.7}``. Each δ has its own best τ.

Ours, not the paper's: **τ is chosen on a held-out split, never on the split that is reported.** Choe et
al. take the max over τ on the evaluated split itself; here :func:`max_box_acc_v2` takes the
:class:`BoxAccCurve` of a selection split (the run's validation or training split) and of the evaluated
split as two arguments, chooses each δ's τ on the first (ties: the smaller τ) and reports the second at
that τ. As in elope's box step (:func:`elope.nn.localization.heatmap_to_box`) each map is min-max
normalised and a cell belongs to the object when its normalised value is > τ; as in Choe et al. the maps
are first resized bilinearly to one common grid (:data:`GRID_SIDE`, so that a 7×7 and a 14×14 map are
measured alike; they resize to the 224-px image, which costs 16× more at 56) and components are
8-connected (their contours); a component's box runs from the outer edge of its first cell to the outer
edge of its last, in pixels of the frame. A map without contrast or with a non-finite value gives the
whole frame, as in the box step. Images without a (non-empty) ground-truth box are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from elope.evaluation.metrics import IOU_THRESHOLD, iou_hits
from elope.nn.crop import as_height_width
from elope.nn.upsampled_threshold import minmax_range

__all__ = [
    "GRID_SIDE",
    "HEATMAP_THRESHOLDS",
    "IOU_LEVELS",
    "BoxAccCurve",
    "LocalizationAccumulator",
    "best_component_iou",
    "component_boxes",
    "max_box_acc_v2",
    "top1_loc_hits",
]

#: The IoU levels δ of MaxBoxAccV2 (Choe et al.: 30, 50 and 70 %).
IOU_LEVELS: tuple[float, ...] = (0.3, 0.5, 0.7)
#: The heatmap thresholds τ tried: 0.00, 0.01, ..., 0.99 (Choe et al. step 0.001 on 224×224 maps; on a 56×56
#: grid from a 14×14 map the finer steps change little).
HEATMAP_THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(100))
#: The side of the common grid every heatmap is resized to before thresholding.
GRID_SIDE = 56
_IMAGES_PER_CHUNK = 16  # maps labelled at once (x 100 thresholds x 56 x 56 int32: 20 MB)
_EIGHT_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_CONNECTED[1] = True  # 8-neighbours within one (image, threshold) plane, never across planes


def top1_loc_hits(
    predictions: Tensor, labels: Tensor, boxes: Tensor, gt_boxes: Tensor
) -> tuple[Tensor, Tensor]:
    """Top-1 localization per image: ``(hits, valid)``, bool (B,): the top-1 class is right and the box
    has IoU >= 0.5 (:func:`elope.evaluation.metrics.iou_hits`, whose ``valid`` it returns)."""
    hits, valid = iou_hits(boxes.cpu(), gt_boxes.cpu(), IOU_THRESHOLD)
    return hits & (predictions.cpu().long() == labels.cpu().long()), valid


def _normalised(heatmaps: Tensor, side: int | None) -> tuple[Tensor, Tensor]:
    """(B, S, S) maps resized to ``side`` (None: as they are) and min-max normalised, and whether each map
    can give a box (finite, with contrast)."""
    maps = heatmaps.detach().float().cpu()
    maps = maps[:, 0] if maps.dim() == 4 else maps
    finite = torch.isfinite(maps).flatten(1).all(dim=1)
    maps = torch.where(torch.isfinite(maps), maps, torch.zeros_like(maps))
    if side is not None and tuple(maps.shape[-2:]) != (side, side):
        maps = F.interpolate(maps[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
    low, scale, contrast = minmax_range(maps)
    return (maps - low) / scale, finite & contrast


def component_boxes(
    heatmaps: Tensor,
    thresholds: Sequence[float],
    frame: int | tuple[int, int],
    side: int | None = GRID_SIDE,
) -> tuple[Tensor, Tensor, Tensor]:
    """The box of every 8-connected component of every thresholded map: ``(boxes (K, 4), image (K,),
    threshold index (K,))``, boxes ``x1, y1, x2, y2`` in pixels of ``frame`` ((H, W) or a square's side).

    ``heatmaps`` (B, 1, h, w) or (B, h, w) are resized to ``side`` × ``side`` (None: kept) and min-max
    normalised; a cell is in the mask of τ when it is > τ. A map that gives no box (constant, non-finite)
    gives the whole frame at every τ, as :func:`elope.nn.localization.heatmap_to_box` does.
    """
    normalised, usable = _normalised(heatmaps, side)
    rows, cols = normalised.shape[-2:]
    height, width = as_height_width(frame)
    tau = torch.tensor(list(thresholds), dtype=torch.float32)
    masks = (normalised[:, None] > tau[None, :, None, None]) & usable[:, None, None, None]
    labels, _ = ndimage.label(masks.reshape(-1, rows, cols).numpy(), structure=_EIGHT_CONNECTED)
    found = [s for s in ndimage.find_objects(labels) if s is not None]
    spans = [(s[0].start, s[1].start, s[1].stop, s[2].start, s[2].stop) for s in found]
    table = torch.tensor(spans, dtype=torch.long).reshape(-1, 5)  # plane, y1, y2, x1, x2 (cells)
    plane, cells = table[:, 0], table[:, 1:].float()
    boxes = torch.stack(
        [cells[:, 2] * width / cols, cells[:, 0] * height / rows, cells[:, 3] * width / cols,
         cells[:, 1] * height / rows], dim=1,
    )  # fmt: skip
    empty = torch.nonzero(~usable).flatten()  # whole frame at every τ
    whole_plane = (empty[:, None] * len(tau) + torch.arange(len(tau))[None]).flatten()
    whole = torch.tensor([[0.0, 0.0, float(width), float(height)]]).expand(len(whole_plane), 4)
    plane, boxes = torch.cat([plane, whole_plane]), torch.cat([boxes, whole])
    return boxes, plane // len(tau), plane % len(tau)


def _pairwise_iou(boxes: Tensor, gt: Tensor) -> Tensor:
    """IoU of each box with the ground-truth box beside it, (K, 4) and (K, 4) → (K,) (0 for two empty)."""
    width = (torch.minimum(boxes[:, 2], gt[:, 2]) - torch.maximum(boxes[:, 0], gt[:, 0])).clamp_min(0)
    height = (torch.minimum(boxes[:, 3], gt[:, 3]) - torch.maximum(boxes[:, 1], gt[:, 1])).clamp_min(0)
    inter = width * height
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def best_component_iou(
    heatmaps: Tensor,
    gt_boxes: Tensor,
    frame: int | tuple[int, int],
    thresholds: Sequence[float] = HEATMAP_THRESHOLDS,
    side: int | None = GRID_SIDE,
) -> Tensor:
    """(B, T): per image and τ, the largest IoU of any component's box with the ground-truth box (the
    best match of MaxBoxAccV2; :func:`component_boxes`). Images without a valid box count as 0; which
    images have one: :func:`elope.evaluation.metrics.iou_hits`."""
    gt = gt_boxes.detach().float().cpu()
    best = torch.zeros(len(gt), len(thresholds))
    for start in range(0, len(gt), _IMAGES_PER_CHUNK):
        part = slice(start, start + _IMAGES_PER_CHUNK)
        boxes, image, tau = component_boxes(heatmaps[part], thresholds, frame, side)
        iou = _pairwise_iou(boxes, gt[part][image])
        chunk = best[part].flatten()
        chunk.scatter_reduce_(0, image * len(thresholds) + tau, iou, reduce="amax")
        best[part] = chunk.view(-1, len(thresholds))
    _, valid = iou_hits(torch.zeros_like(gt), gt)
    return torch.where(valid[:, None], best, torch.zeros_like(best))


@dataclass
class BoxAccCurve:
    """Counts of BoxAcc(τ, δ) over a split, summed batch by batch: ``hits`` (len(levels), len(thresholds))
    images whose best component box reaches IoU >= δ at τ, out of ``images`` with a valid box."""

    frame: int | tuple[int, int]
    thresholds: tuple[float, ...] = HEATMAP_THRESHOLDS
    levels: tuple[float, ...] = IOU_LEVELS
    side: int | None = GRID_SIDE
    hits: Tensor = field(init=False)
    images: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.hits = torch.zeros(len(self.levels), len(self.thresholds), dtype=torch.long)

    def update(self, heatmaps: Tensor, gt_boxes: Tensor) -> None:
        """Add a batch: heatmaps (B, 1, h, w) and ground-truth boxes (B, 4) in pixels of ``frame``."""
        best = best_component_iou(heatmaps, gt_boxes, self.frame, self.thresholds, self.side)
        _, valid = iou_hits(torch.zeros(len(best), 4), gt_boxes.detach().cpu())
        for i, level in enumerate(self.levels):
            self.hits[i] += (best[valid] >= level).sum(dim=0)
        self.images += int(valid.sum())

    def accuracy(self) -> Tensor:
        """BoxAcc(τ, δ), (len(levels), len(thresholds)) in [0, 1] (zeros without images)."""
        return self.hits.double() / max(self.images, 1)


def max_box_acc_v2(selection: BoxAccCurve, evaluated: BoxAccCurve) -> dict[str, Any] | None:
    """MaxBoxAccV2 of the ``evaluated`` split with each δ's τ chosen on the ``selection`` split.

    Returns ``{"value": mean over δ of the evaluated BoxAcc at its τ, "per_iou": {"0.3": {"tau",
    "selection", "accuracy"}, ...}, "selection_images", "images"}`` (accuracies in [0, 1]); None when
    either split has no image with a box. The evaluated curve is read only at the chosen τ.
    """
    if (selection.thresholds, selection.levels, selection.side) != (
        evaluated.thresholds,
        evaluated.levels,
        evaluated.side,
    ):
        raise ValueError("the selection and evaluated curves were measured on different grids")
    if not selection.images or not evaluated.images:
        return None
    chosen, test = selection.accuracy(), evaluated.accuracy()
    per_iou = {}
    for i, level in enumerate(selection.levels):
        scores = chosen[i].tolist()
        j = max(range(len(scores)), key=lambda k: (scores[k], -k))  # ties: the smaller τ
        per_iou[str(level)] = {
            "tau": selection.thresholds[j],
            "selection": scores[j],
            "accuracy": float(test[i, j]),
        }
    value = sum(v["accuracy"] for v in per_iou.values()) / len(per_iou)
    return {
        "value": value,
        "per_iou": per_iou,
        "selection_images": selection.images,
        "images": evaluated.images,
    }


@dataclass
class LocalizationAccumulator:
    """GT-known and top-1 localization accuracy of one box source, and its :class:`BoxAccCurve` on the
    evaluated split, summed batch by batch (``elope evaluate``)."""

    frame: int | tuple[int, int]
    known: int = 0
    top1: int = 0
    boxes: int = 0
    curve: BoxAccCurve | None = None

    def update(
        self, labels: Tensor, predictions: Tensor, boxes: Tensor, gt_boxes: Tensor, heatmaps: Tensor | None
    ) -> None:
        """Add a batch: true and top-1 classes (B,), boxes and ground-truth boxes (B, 4) in pixels of
        ``frame``, and the heatmaps the boxes came from (None: no MaxBoxAccV2)."""
        hits, valid = iou_hits(boxes.cpu(), gt_boxes.cpu())
        self.known += int(hits.sum())
        self.top1 += int(top1_loc_hits(predictions, labels, boxes, gt_boxes)[0].sum())
        self.boxes += int(valid.sum())
        if heatmaps is not None:
            self.curve = self.curve or BoxAccCurve(self.frame)
            self.curve.update(heatmaps, gt_boxes)

    def result(self, selection: BoxAccCurve | None, split: str | None) -> dict[str, Any] | None:
        """``{"gt_known", "top1_loc", "maxboxacc_v2"}`` (fractions; MaxBoxAccV2 from :func:`max_box_acc_v2`
        with ``selection_split`` named, None without heatmaps or a selection curve); None without boxes."""
        if not self.boxes:
            return None
        v2 = None
        if selection is not None and self.curve is not None:
            v2 = max_box_acc_v2(selection, self.curve)
            if v2 is not None:
                v2 = {"value": v2.pop("value"), "selection_split": split, **v2}
        return {"gt_known": self.known / self.boxes, "top1_loc": self.top1 / self.boxes, "maxboxacc_v2": v2}
