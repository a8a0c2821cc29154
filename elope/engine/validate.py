"""Validation during training (``dataset.val_fraction > 0``): the metrics of the pipeline a stage trains,
and which epoch is best (``train.select: best``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from elope.engine import distributed as D
from elope.engine.loop import make_loader, pass_progress
from elope.evaluation.metrics import iou_hits
from elope.engine.plan import StagePlan
from elope.engine.steps import localizer_target, to_device
from elope.nn.localization import heatmap_loss
from elope.nn.model import ELoPE
from elope.nn.modes import evaluating

__all__ = ["evaluate_split", "selection_score"]


@torch.no_grad()
def evaluate_split(model: ELoPE, dataset: Any, plan: StagePlan, dist: D.DistInfo) -> dict[str, float]:
    """Validation metrics of the pipeline ``plan.stage`` trains, summed over processes.

    classifier/crop/weighted: ``top1`` (softmax) and ``loss`` (cross-entropy), on crops when the stage
    trains on crops; localizer: ``loss`` (smooth L1 to the mean heatmap). ``loc_iou50`` (share of boxes
    with IoU ≥ 0.5, Table 4) when the localization module is trained and the data have boxes.
    """
    loader = make_loader(dataset, max(1, plan.local_batch), plan.loader, epoch=0, shuffle=False)
    sums = torch.zeros(5, dtype=torch.float64)  # loss*n, correct, n, iou hits, boxes
    with evaluating(model):
        for images, labels, gt in pass_progress(loader, plan, f"[{plan.stage}] validation"):
            images, labels = to_device(images, plan), labels.to(plan.device)
            with plan.autocast():
                loss, correct, boxes = _batch(model, images, labels, plan)
            n = labels.shape[0]
            sums[:3] += torch.tensor([float(loss) * n, correct, n], dtype=torch.float64)
            if boxes is not None:
                hits, has = iou_hits(boxes.cpu(), gt)
                sums[3:] += torch.tensor([float(hits.sum()), float(has.sum())], dtype=torch.float64)
    sums = D.all_reduce_sum(sums, dist)
    n = max(float(sums[2]), 1.0)
    out = {"loss": float(sums[0]) / n}
    if plan.stage != "localizer":
        out["top1"] = float(sums[1]) / n
    if sums[4] > 0:
        out["loc_iou50"] = float(sums[3]) / float(sums[4])
    return out


def _batch(
    model: ELoPE, images: torch.Tensor, labels: torch.Tensor, plan: StagePlan
) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """One validation batch: its mean loss, correct answers and the module's boxes (None: no boxes)."""
    if plan.stage == "localizer":
        boxes, heat = model.localize(images)
        heat = heat.float()
        target = localizer_target(model, images, tuple(heat.shape[-2:]))
        return heatmap_loss(heat, target, plan.heatmap_target), 0, boxes
    boxes = None
    if plan.crops:
        logits, boxes, _, _ = model.classify_crops(images)
    else:
        logits = model(images)
    logits = logits.float()
    return F.cross_entropy(logits, labels), int((logits.argmax(1) == labels).sum()), boxes


def selection_score(stage: str, val: dict[str, float]) -> tuple[float, ...]:
    """Higher is better: val top-1 then minus the val loss (ties on small val sets), or minus the val
    smooth-L1 loss for the localizer."""
    return (-val["loss"],) if stage == "localizer" else (val["top1"], -val["loss"])
