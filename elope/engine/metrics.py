"""Evaluation metrics of the method, shared by training's validation and ``elope evaluate``.

Table 4's localization criterion (:func:`iou_hits`: IoU ≥ 0.5 with the ground-truth box), nearest class
mean classification in the space of the class-mean loss (Eqs. 5-10), per-class accuracy, the most confused
pairs, and :class:`EvalAccumulator`, which sums them batch by batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

__all__ = [
    "IOU_THRESHOLD",
    "EvalAccumulator",
    "confused_pairs",
    "iou_hits",
    "nearest_class_mean",
    "per_class_accuracy",
]


IOU_THRESHOLD = 0.5  # Table 4: a box is correct when IoU >= 0.5 with the ground truth


def iou_hits(pred_boxes: Tensor, gt_boxes: Tensor, threshold: float = IOU_THRESHOLD) -> tuple[Tensor, Tensor]:
    """Table 4's criterion per image: ``(hits, valid)``, both bool (B,).

    ``valid`` marks images with a ground-truth box (no NaN) of positive area (a box that lay wholly outside
    its image is empty once clamped to it: left out, see :func:`gt_box_problems`); ``hits`` is IoU(pred, gt)
    >= ``threshold`` (boundary included) and False where not valid. Boxes are ``x1, y1, x2, y2`` in the
    same pixel frame.
    """
    pred_boxes, gt_boxes = pred_boxes.float(), gt_boxes.float()
    valid = (
        torch.isfinite(gt_boxes).all(dim=1)
        & (gt_boxes[:, 2] > gt_boxes[:, 0])
        & (gt_boxes[:, 3] > gt_boxes[:, 1])
    )
    hits = torch.zeros_like(valid)
    if valid.any():
        iou = box_iou(pred_boxes[valid], gt_boxes[valid]).diagonal()
        hits[valid] = iou >= threshold  # NaN (two empty boxes) counts as a miss
    return hits, valid


def nearest_class_mean(embeddings: Tensor, means: Tensor) -> Tensor:
    """Index of the nearest class mean for each embedding, both l2-normalised (Eqs. 5-10 space).

    On the unit sphere the smallest Euclidean distance is the largest cosine similarity.
    """
    return (F.normalize(embeddings.float(), dim=1) @ F.normalize(means.float(), dim=1).T).argmax(dim=1)


def per_class_accuracy(confusion: Tensor, classes: Sequence[str]) -> dict[str, float | None]:
    """Accuracy of each class (row of the confusion matrix); None for a class without images in the split."""
    totals = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return {
        name: (float(correct[i]) / float(totals[i]) if totals[i] > 0 else None)
        for i, name in enumerate(classes)
    }


def confused_pairs(confusion: Tensor, classes: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal confusion counts as ``{"true", "predicted", "count"}``, largest first.

    Pairs are ordered (true class, predicted class); zero counts are left out; ties are broken by index.
    """
    off = confusion.clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    order = sorted(range(flat.numel()), key=lambda j: (-int(flat[j]), j))
    c = confusion.shape[1]
    pairs = []
    for j in order[:k]:
        if int(flat[j]) == 0:
            break
        pairs.append({"true": classes[j // c], "predicted": classes[j % c], "count": int(flat[j])})
    return pairs


class EvalAccumulator:
    """Accumulates per-batch results into the metrics of :func:`elope.tasks.evaluate.evaluate_run`."""

    def __init__(self, num_classes: int, *, with_ncm: bool, with_boxes: bool) -> None:
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.with_ncm, self.with_boxes = with_ncm, with_boxes
        self.ncm_correct = 0
        self.loc_hits = self.mean_map_hits = self.num_boxes = 0

    def update(
        self,
        labels: Tensor,
        predictions: Tensor,
        ncm_predictions: Tensor | None = None,
        boxes: Tensor | None = None,
        mean_map_boxes: Tensor | None = None,
        gt_boxes: Tensor | None = None,
    ) -> None:
        labels, predictions = labels.cpu().long(), predictions.cpu().long()
        c = self.confusion.shape[0]
        self.confusion += torch.bincount(labels * c + predictions, minlength=c * c).view(c, c)
        if self.with_ncm and ncm_predictions is not None:
            self.ncm_correct += int((ncm_predictions.cpu() == labels).sum())
        if self.with_boxes and gt_boxes is not None and boxes is not None:
            hits, valid = iou_hits(boxes.cpu(), gt_boxes.cpu())
            self.loc_hits += int(hits.sum())
            self.num_boxes += int(valid.sum())
            if mean_map_boxes is not None:
                self.mean_map_hits += int(iou_hits(mean_map_boxes.cpu(), gt_boxes.cpu())[0].sum())

    @property
    def num_images(self) -> int:
        return int(self.confusion.sum())

    def result(self, classes: Sequence[str]) -> dict[str, Any]:
        n = self.num_images
        per_class = per_class_accuracy(self.confusion, classes)
        present = [a for a in per_class.values() if a is not None]
        has_loc = self.with_boxes and self.num_boxes > 0
        return {
            "top1": float(self.confusion.diagonal().sum()) / n if n else None,
            "ncm_top1": self.ncm_correct / n if (self.with_ncm and n) else None,
            "loc_iou50": self.loc_hits / self.num_boxes if has_loc else None,
            "mean_map_iou50": self.mean_map_hits / self.num_boxes if has_loc else None,
            "num_images": n,
            "num_boxes": self.num_boxes if has_loc else 0,
            "per_class": per_class,
            "mean_per_class": sum(present) / len(present) if present else None,
            "confused_pairs": confused_pairs(self.confusion, classes),
        }
