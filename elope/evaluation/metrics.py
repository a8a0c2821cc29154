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
    "PairCounts",
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
    return _per_class(confusion.sum(dim=1), confusion.diagonal(), classes)


def _per_class(totals: Tensor, correct: Tensor, classes: Sequence[str]) -> dict[str, float | None]:
    """Accuracy of each class from its image count and its correct answers (None: no images)."""
    totals_list, correct_list = totals.tolist(), correct.tolist()
    return {
        name: (float(correct_list[i]) / float(totals_list[i]) if totals_list[i] > 0 else None)
        for i, name in enumerate(classes)
    }


def confused_pairs(confusion: Tensor, classes: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal confusion counts as ``{"true", "predicted", "count"}``, largest first.

    Pairs are ordered (true class, predicted class); zero counts are left out; ties are broken by index.
    """
    off = confusion.clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    codes = flat.nonzero().flatten()
    return _top_pairs(codes, flat[codes], confusion.shape[1], classes, k)


def _top_pairs(codes: Tensor, counts: Tensor, c: int, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """:func:`confused_pairs` from the flat indices ``true * c + predicted`` (ascending, distinct, off the
    diagonal) and their positive counts: largest count first, ties by index."""
    order = torch.sort(-counts, stable=True).indices[:k]
    return [
        {"true": classes[j // c], "predicted": classes[j % c], "count": n}
        for j, n in zip(codes[order].tolist(), counts[order].tolist(), strict=True)
    ]


class PairCounts:
    """The off-diagonal confusion counts, kept sparse: the distinct ``true * C + predicted`` codes seen and
    their counts (memory grows with the distinct confused pairs, at most min(errors, C²), never C²
    preallocated: 10,000 classes would need 800 MB dense). Batches are buffered and merged once the buffer
    outgrows the merged table."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.codes = torch.zeros(0, dtype=torch.long)
        self.counts = torch.zeros(0, dtype=torch.long)
        self._pending: list[Tensor] = []
        self._pending_size = 0

    def add(self, labels: Tensor, predictions: Tensor) -> None:
        wrong = labels != predictions
        if bool(wrong.any()):
            self._pending.append(labels[wrong] * self.num_classes + predictions[wrong])
            self._pending_size += self._pending[-1].numel()
        if self._pending_size > max(4096, self.codes.numel()):
            self.merge()

    def merge(self) -> None:
        """Fold the buffered batches into ``codes`` (ascending, distinct) and ``counts``."""
        if not self._pending:
            return
        new = torch.cat(self._pending)
        codes = torch.cat([self.codes, new])
        weights = torch.cat([self.counts, torch.ones_like(new)])
        self.codes, inverse = torch.unique(codes, sorted=True, return_inverse=True)
        self.counts = torch.zeros_like(self.codes).scatter_add_(0, inverse, weights)
        self._pending, self._pending_size = [], 0

    def top(self, classes: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
        self.merge()
        return _top_pairs(self.codes, self.counts, self.num_classes, classes, k)

    def dense(self) -> Tensor:
        """The off-diagonal part as a (C, C) matrix (small C only: tests, reports)."""
        self.merge()
        c = self.num_classes
        return torch.zeros(c * c, dtype=torch.long).index_add_(0, self.codes, self.counts).view(c, c)


class EvalAccumulator:
    """Accumulates per-batch results into the metrics of :func:`elope.tasks.evaluate.evaluate_run`.

    Streamed: it holds per-class counts (C) and the sparse confused pairs (:class:`PairCounts`), never the
    logits or embeddings of the split nor a dense C × C matrix, so a 100,000-image split at C = 10,000
    evaluates in memory independent of the number of images (``benchmarks/classes.py`` measures it).
    """

    def __init__(self, num_classes: int, *, with_ncm: bool, with_boxes: bool) -> None:
        self.num_classes = num_classes
        self.totals = torch.zeros(num_classes, dtype=torch.long)  # images per true class
        self.correct = torch.zeros(num_classes, dtype=torch.long)  # correct answers per true class
        self.pairs = PairCounts(num_classes)
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
        self.totals.index_add_(0, labels, torch.ones_like(labels))
        self.correct.index_add_(0, labels, (labels == predictions).long())
        self.pairs.add(labels, predictions)
        if self.with_ncm and ncm_predictions is not None:
            self.ncm_correct += int((ncm_predictions.cpu() == labels).sum())
        if self.with_boxes and gt_boxes is not None and boxes is not None:
            hits, valid = iou_hits(boxes.cpu(), gt_boxes.cpu())
            self.loc_hits += int(hits.sum())
            self.num_boxes += int(valid.sum())
            if mean_map_boxes is not None:
                self.mean_map_hits += int(iou_hits(mean_map_boxes.cpu(), gt_boxes.cpu())[0].sum())

    @property
    def confusion(self) -> Tensor:
        """The (C, C) confusion matrix, built on demand (small C only; the accumulator never holds it)."""
        matrix = self.pairs.dense()
        matrix.diagonal().copy_(self.correct)
        return matrix

    @property
    def num_images(self) -> int:
        return int(self.totals.sum())

    def result(self, classes: Sequence[str]) -> dict[str, Any]:
        n = self.num_images
        per_class = _per_class(self.totals, self.correct, classes)
        present = [a for a in per_class.values() if a is not None]
        has_loc = self.with_boxes and self.num_boxes > 0
        return {
            "top1": float(self.correct.sum()) / n if n else None,
            "ncm_top1": self.ncm_correct / n if (self.with_ncm and n) else None,
            "loc_iou50": self.loc_hits / self.num_boxes if has_loc else None,
            "mean_map_iou50": self.mean_map_hits / self.num_boxes if has_loc else None,
            "num_images": n,
            "num_boxes": self.num_boxes if has_loc else 0,
            "per_class": per_class,
            "mean_per_class": sum(present) / len(present) if present else None,
            "confused_pairs": self.pairs.top(classes),
        }
