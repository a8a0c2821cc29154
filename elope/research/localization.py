"""Table 4 for every box threshold and box rule at once: the heatmaps of a split computed once, then scored.

:func:`collect_maps` runs a trained run's localization module, and its teacher's mean feature map (the
stage-1 classifier, Table 4's "mean feature map" row), over a split at the run's crop source, as the
one-pass pipeline reads it; :func:`score_maps` turns cached heatmaps into the share of boxes with IoU ≥ 0.5
for each τ of :data:`elope.engine.localizer_check.TAU_GRID`, each box rule and with and without heatmap
upsampling. ``elope suite`` reads both splits: τ for the teacher's map is chosen on the training split
(:func:`best_tau`), the test split only reported; so are MaxBoxAccV2's thresholds (:func:`box_acc_curve`,
:func:`elope.evaluation.localization_metrics.max_box_acc_v2`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from elope.config import Config
from elope.engine.distributed import DistInfo
from elope.engine.localizer_check import (
    TAU_GRID,
    choose_tau,
    new_sums,
    reference_features,
    score_batch,
)
from elope.evaluation.localization_metrics import BoxAccCurve
from elope.evaluation.loop import iterate
from elope.evaluation.metrics import iou_hits
from elope.evaluation.outputs import Want
from elope.nn.localization import BOX_RULES, heatmap_to_box
from elope.runs.loaded import load_run

__all__ = [
    "CachedMaps",
    "best_tau",
    "box_acc_curve",
    "collect_maps",
    "labels_tau",
    "score_maps",
    "training_split",
    "variant_name",
]


@dataclass
class CachedMaps:
    """Heatmaps of one split: the module's (N, 1, 14, 14) and the teacher's mean maps (N, 1, h, w), the
    ground-truth boxes (N, 4) in pixels of the square crop source of side ``size``; the true classes (N,)
    and the teacher's top-1 classes of the whole images (N,), for its top-1 localization."""

    module: Tensor
    mean_map: Tensor
    boxes: Tensor
    size: int
    labels: Tensor
    mean_map_classes: Tensor


def collect_maps(run_dir: str | Path, split: str, batch_size: int = 32) -> CachedMaps:
    """The module's heatmaps and the teacher's mean maps of every image of ``split`` (no augmentation)."""
    run = load_run(run_dir)  # models are built outside inference mode (timm backbones trace a backward)
    if run.model.localizer is None:
        raise ValueError(f"{run_dir} has no trained localization module")
    predictor = run.predictor(teacher=run.load_teacher())
    dataset, _, _ = run.load_dataset(split)
    module, mean_map, boxes, labels, classes = [], [], [], [], []
    loader = DataLoader(dataset, batch_size=batch_size)
    for (_, targets, gt), out in iterate(predictor, loader, Want(pipeline="heatmaps", top=0, boxes=False)):
        if out is None or out.heatmaps is None or out.mean_map_heatmaps is None:
            continue  # never: a plain dataset, a run with a module and a teacher
        module.append(out.heatmaps.float())
        mean_map.append(out.mean_map_heatmaps)  # the mean map of Table 4 and the teacher's class
        classes.append(out.mean_map_predictions)
        boxes.append(gt.as_subclass(Tensor).float())
        labels.append(torch.as_tensor(targets).long())
    cat = torch.cat
    return CachedMaps(cat(module), cat(mean_map), cat(boxes), run.spec.crop_source, cat(labels), cat(classes))


def training_split(run_dir: str | Path) -> str:
    """The split a run trained on (``model.json`` → ``splits``), ``trainval`` when not recorded."""
    splits = load_run(run_dir).meta.get("splits") or {}
    return (splits.get("train") or {}).get("split", "trainval")


def labels_tau(run_dir: str | Path, batch_size: int = 32) -> dict[str, object]:
    """The τ the labels criterion of ``model.tau_select=labels`` chooses for a trained run's module (its
    training split, its box rule), whatever the run itself used: ``{"tau", "separability": {τ: score}}``."""
    run = load_run(run_dir)
    cfg = Config.from_dict(run.meta["config"])
    reference = reference_features(cfg, len(run.classes))
    dataset, _, _ = run.load_dataset(training_split(run_dir))
    sums = new_sums(len(run.classes), run.model.num_features)
    loader = DataLoader(dataset, batch_size=batch_size)
    with torch.inference_mode():
        for (images, labels, gt), out in iterate(run, loader, Want(pipeline="heatmaps", top=0, boxes=False)):
            if out is not None and out.heatmaps is not None:
                score_batch(
                    run.model, sums, [images, labels, gt.as_subclass(Tensor)], out.heatmaps, reference
                )
    check = sums.result(DistInfo())
    tau, _ = choose_tau(check, "labels", cfg.model.tau)
    scores = {str(t): v for t, v in zip(TAU_GRID, check.separability or []) if v is not None}
    return {"tau": tau, "separability": scores}


def variant_name(rule: str, upsample: bool) -> str:
    """``peak/up``, ``all/cells``, ...: a box rule with or without heatmap upsampling."""
    return f"{rule}/{'up' if upsample else 'cells'}"


def score_maps(maps: Tensor, gt: Tensor, size: int) -> dict[str, dict[str, float]]:
    """``{variant: {tau: share of boxes with IoU >= 0.5}}`` for every box rule, upsampling and τ."""
    table: dict[str, dict[str, float]] = {}
    for rule in BOX_RULES:
        for upsample in (False, True):
            row = {}
            for tau in TAU_GRID:
                boxes = heatmap_to_box(maps, tau, size, upsample=upsample, rule=rule)
                hits, valid = iou_hits(boxes, gt)
                row[str(tau)] = float(hits.sum()) / max(int(valid.sum()), 1)
            table[variant_name(rule, upsample)] = row
    return table


def box_acc_curve(maps: Tensor, gt: Tensor, size: int) -> BoxAccCurve:
    """The :class:`elope.evaluation.localization_metrics.BoxAccCurve` of cached heatmaps (MaxBoxAccV2's box
    accuracy at every heatmap threshold and IoU level)."""
    curve = BoxAccCurve(size)
    curve.update(maps, gt)
    return curve


def best_tau(row: dict[str, float]) -> float:
    """The τ with the most hits in a row of :func:`score_maps` (ties: the smaller τ)."""
    return float(max(row, key=lambda t: (row[t], -float(t))))
