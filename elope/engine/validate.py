"""Validation during training (``dataset.val_fraction > 0``): the metrics of the pipeline a stage trains,
and which epoch is best (``train.select: best``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from elope.engine import distributed as D
from elope.engine.context import Run
from elope.engine.loop import make_loader
from elope.engine.metrics import iou_hits
from elope.engine.stages import uses_crops
from elope.engine.steps import autocast, localizer_target, to_device
from elope.nn.localization import heatmap_loss

__all__ = ["evaluate_split", "selection_score"]


@torch.no_grad()
def evaluate_split(run: Run, stage: str, dataset: Any) -> dict[str, float]:
    """Validation metrics of the pipeline ``stage`` trains, summed over processes.

    classifier/crop/weighted: ``top1`` (softmax) and ``loss`` (cross-entropy), on crops when the stage
    trains on crops; localizer: ``loss`` (smooth L1 to the mean heatmap). ``loc_iou50`` (share of boxes
    with IoU ≥ 0.5, Table 4) when the localization module is trained and the data have boxes.
    """
    model, cfg = run.model, run.cfg
    was = {m: m.training for m in model.modules()}
    model.eval()
    batch = max(1, getattr(cfg.stages, stage).batch_size // run.dist.world_size)
    loader = make_loader(run, dataset, batch, epoch=0, shuffle=False)
    sums = torch.zeros(5, dtype=torch.float64)  # loss*n, correct, n, iou hits, boxes
    for images, labels, gt in loader:
        images, labels = to_device(run, images), labels.to(run.device)
        n, boxes, correct = labels.shape[0], None, 0
        with autocast(run):
            if stage == "localizer":
                boxes, heat = model.localize(images)
                heat = heat.float()
                target = localizer_target(model, images, tuple(heat.shape[-2:]))
                loss = heatmap_loss(heat, target, cfg.loss.localizer_target)
            else:
                if uses_crops(run, stage):
                    logits, boxes, _, _ = model.classify_crops(images)
                else:
                    logits = model(images)
                logits = logits.float()
                loss = F.cross_entropy(logits, labels)
                correct = int((logits.argmax(1) == labels).sum())
        sums[:3] += torch.tensor([float(loss) * n, correct, n], dtype=torch.float64)
        if boxes is not None:
            hits, has = iou_hits(boxes.cpu(), gt)
            sums[3:] += torch.tensor([float(hits.sum()), float(has.sum())], dtype=torch.float64)
    for m, mode in was.items():
        m.train(mode)
    sums = D.all_reduce_sum(sums, run.dist)
    n = max(float(sums[2]), 1.0)
    out = {"loss": float(sums[0]) / n}
    if stage != "localizer":
        out["top1"] = float(sums[1]) / n
    if sums[4] > 0:
        out["loc_iou50"] = float(sums[3]) / float(sums[4])
    return out


def selection_score(stage: str, val: dict[str, float]) -> tuple[float, ...]:
    """Higher is better: val top-1 then minus the val loss (ties on small val sets), or minus the val
    smooth-L1 loss for the localizer."""
    return (-val["loss"],) if stage == "localizer" else (val["top1"], -val["loss"])
