"""Validation during training (``dataset.val_fraction > 0``): the metrics of the pipeline a stage trains,
and which epoch is best (``train.select: best``).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F

from elope.engine import distributed as D
from elope.engine.loop import evaluation_pass, make_loader
from elope.engine.plan import StagePlan
from elope.engine.steps import localizer_target
from elope.evaluation.metrics import iou_hits
from elope.evaluation.outputs import BatchOutputs, Want
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
    want = Want(pipeline=_pipeline(plan), top=0)
    with evaluating(model):
        for (images, labels, gt), out in evaluation_pass(
            model, loader, plan, f"[{plan.stage}] validation", want
        ):
            if out is None:
                continue  # never: validation reads a plain dataset
            labels = labels.to(plan.device)
            with plan.autocast():
                loss, correct = _batch(model, images, labels, out, plan)
            n = labels.shape[0]
            sums[:3] += torch.tensor([float(loss) * n, correct, n], dtype=torch.float64)
            if out.boxes is not None:  # the module's (localizer, crop stages)
                hits, has = iou_hits(out.boxes.cpu(), gt)
                sums[3:] += torch.tensor([float(hits.sum()), float(has.sum())], dtype=torch.float64)
    sums = D.all_reduce_sum(sums, dist)
    n = max(float(sums[2]), 1.0)
    metrics = {"loss": float(sums[0]) / n}
    if plan.stage != "localizer":
        metrics["top1"] = float(sums[1]) / n
    if sums[4] > 0:
        metrics["loc_iou50"] = float(sums[3]) / float(sums[4])
    return metrics


def _pipeline(plan: StagePlan) -> str:
    """What the stage's network sees: the localization module alone, its crops, or the whole image."""
    return "heatmaps" if plan.stage == "localizer" else "crops" if plan.crops else "whole"


def _batch(
    model: ELoPE, images: torch.Tensor, labels: torch.Tensor, out: BatchOutputs, plan: StagePlan
) -> tuple[torch.Tensor, int]:
    """One validation batch from its outputs: its mean loss and correct answers."""
    if plan.stage == "localizer":
        heat = cast(torch.Tensor, out.heatmaps).float()  # the localizer stage's model has its module
        target = localizer_target(model, images, tuple(heat.shape[-2:]))
        return heatmap_loss(heat, target, plan.heatmap_target), 0
    logits = cast(torch.Tensor, out.logits).float()  # the crops and whole pipelines classify
    return F.cross_entropy(logits, labels), int((logits.argmax(1) == labels).sum())


def selection_score(stage: str, val: dict[str, float]) -> tuple[float, ...]:
    """Higher is better: val top-1 then minus the val loss (ties on small val sets), or minus the val
    smooth-L1 loss for the localizer."""
    return (-val["loss"],) if stage == "localizer" else (val["top1"], -val["loss"])
