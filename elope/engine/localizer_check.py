"""The end of stage 2 (Sec. 5): the box threshold τ chosen on the training split, and a check of the
localization module before the crop stage spends its epochs on the module's boxes.

One pass over the training split (no augmentation; the crop source, as the one-pass pipeline reads it)
measures, for every τ of :data:`TAU_GRID`, with the model's box rule and upsampling:

* ``iou50``: the share of boxes with IoU ≥ 0.5 against the training boxes, where the dataset has them
  (the boxes are used for nothing else: the module never sees them);
* ``whole``: the share of boxes that cover more than :data:`WHOLE_AREA` of the frame;
* ``separability`` (only when τ is chosen by class labels): how well the crops' features separate the
  classes, the between-class / within-class scatter of l2-normalised pooled features
  (:func:`scatter_ratio`) in the network the crop stage starts from;

and the heatmaps' ``contrast`` (:func:`heatmap_contrast`). ``model.tau_select`` then sets the model's τ:
``fixed`` keeps ``model.tau`` (the paper's Table 2 values); ``boxes`` takes the τ with the most IoU hits on
the training boxes; ``labels`` the τ whose crops separate the classes best; ``auto`` is ``boxes`` where the
training split has boxes and ``labels`` where it has none. The result goes to ``metrics.jsonl`` as one
``{"event": "localizer_check", ...}`` record, and a degenerate module (most boxes ≈ the whole frame) is
reported in plain words with what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from elope.data.transforms import crop_source_size
from elope.engine import distributed as D
from elope.engine.context import Run
from elope.engine.loop import make_loader
from elope.engine.metrics import iou_hits
from elope.engine.stages import make_model
from elope.engine.steps import autocast, to_device
from elope.failures import TrainingError
from elope.nn.crop import crop_and_resize

__all__ = [
    "DEGENERATE_SHARE",
    "TAU_GRID",
    "WHOLE_AREA",
    "LocalizerCheck",
    "check_localizer",
    "choose_tau",
    "heatmap_contrast",
    "scatter_ratio",
]

#: The thresholds τ tried (0.10, 0.15, ..., 0.90).
TAU_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(2, 19))
#: A box "covers most of the frame" above this share of the frame's area.
WHOLE_AREA = 0.8
#: A module whose boxes cover most of the frame on at least this share of the training images is degenerate.
DEGENERATE_SHARE = 0.5
#: Heatmaps whose contrast (:func:`heatmap_contrast`) is below this are flat.
LOW_CONTRAST = 0.5


def heatmap_contrast(heatmaps: Tensor) -> Tensor:
    """Per map, 1 − the mean of the min-max normalised heatmap, (B, 1, h, w) → (B,): 1 for a single peak on
    a flat floor, about 0.5 for a texture as much high as low, 0 for a constant map."""
    flat = heatmaps.float().flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    span = high - low
    normalised = (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny)
    return torch.where(span[:, 0] > 0, 1 - normalised.mean(1), torch.zeros_like(span[:, 0]))


def scatter_ratio(class_sums: Tensor, counts: Tensor, square_sum: Tensor) -> float:
    """Between-class over within-class scatter (traces) of l2-normalised features, from the sums a pass
    accumulates: per-class feature sums (C, D), per-class counts (C,), and the sum of squared norms."""
    total = counts.sum().clamp_min(1)
    class_part = (class_sums.pow(2).sum(1) / counts.clamp_min(1)).sum()
    within = square_sum - class_part
    between = class_part - class_sums.sum(0).pow(2).sum() / total
    return float(between / within.clamp_min(1e-12))


@dataclass
class LocalizerCheck:
    """What the pass measured: per τ of :data:`TAU_GRID`, and overall."""

    images: int
    boxes: int  # training images with a ground-truth box
    hits: list[int]  # per τ: boxes with IoU >= 0.5
    whole: list[int]  # per τ: boxes covering more than WHOLE_AREA of the frame
    separability: list[float] | None  # per τ: scatter ratio of the crops' features (labels criterion)
    contrast: float  # mean heatmap contrast

    def at(self, tau: float) -> dict[str, float | None]:
        """The measurements at one τ of the grid."""
        i = TAU_GRID.index(tau)
        return {
            "iou50": self.hits[i] / self.boxes if self.boxes else None,
            "whole": self.whole[i] / max(self.images, 1),
            "separability": None if self.separability is None else self.separability[i],
        }


def choose_tau(check: LocalizerCheck, select: str, fixed: float) -> tuple[float, str]:
    """The τ of ``model.tau_select`` and how it was chosen (``fixed``, ``boxes`` or ``labels``).

    ``boxes``: the most IoU hits on the training boxes (ties: the smaller τ); ``labels``: the largest
    separability of the crops' features (ties: the smaller τ); ``auto``: ``boxes`` when the training split
    has boxes, else ``labels``.
    """
    if select == "auto":
        select = "boxes" if check.boxes else "labels"
    if select == "fixed":
        return fixed, "fixed"
    if select == "boxes":
        if not check.boxes:
            raise TrainingError(
                "model.tau_select=boxes needs ground-truth boxes in the training split, and this dataset has "
                "none: use model.tau_select=labels (or auto), or a fixed model.tau with tau_select=fixed"
            )
        scores = check.hits
    else:
        if check.separability is None:
            raise TrainingError("the labels criterion was not measured")  # a bug, not a user error
        scores = check.separability
    best = max(range(len(TAU_GRID)), key=lambda i: (scores[i], -i))
    return TAU_GRID[best], select


def _reference_features(run: Run) -> torch.nn.Module:
    """The network the crop stage starts from, whose features the labels criterion scores: a fresh model's
    backbone (``stages.crop.init: fresh`` with pretrained or given weights), else the trained classifier's."""
    cfg = run.cfg
    if cfg.stages.crop.init == "fresh" and (cfg.model.pretrained or cfg.model.weights):
        with torch.random.fork_rng(devices=[]):  # the run's random stream stays as it was
            features = make_model(cfg, len(run.classes)).features
        return features.to(run.device).eval()
    return run.model.features


class _Sums:
    """The running sums of the pass, one row per τ."""

    def __init__(self, classes: int, width: int | None) -> None:
        n = len(TAU_GRID)
        self.counts = torch.zeros(n, 3, dtype=torch.float64)  # hits, whole, images
        self.boxes = torch.zeros(1, dtype=torch.float64)
        self.contrast = torch.zeros(1, dtype=torch.float64)
        self.features = None if width is None else torch.zeros(n, classes, width, dtype=torch.float64)
        self.labels = torch.zeros(classes, dtype=torch.float64)
        self.squares = torch.zeros(n, dtype=torch.float64)

    def tensors(self) -> list[Tensor]:
        parts = [self.counts, self.boxes, self.contrast, self.labels, self.squares]
        return parts if self.features is None else [*parts, self.features]

    def reduce(self, run: Run) -> None:
        for t in self.tensors():
            t.copy_(D.all_reduce_sum(t, run.dist))


def _score_batch(
    run: Run, sums: _Sums, images: Tensor, labels: Tensor, gt: Tensor, reference: torch.nn.Module | None
) -> None:
    """One batch of the pass: the module's heatmaps once, then the boxes (and crops) at every τ."""
    model, size = run.model, images.shape[-2:]
    heatmaps = model.localizer(images).float()
    sums.contrast += float(heatmap_contrast(heatmaps).sum())
    _, valid = iou_hits(torch.zeros_like(gt), gt)
    sums.boxes += float(valid.sum())
    frame = float(size[0] * size[1])
    if reference is not None:
        sums.labels += torch.bincount(labels, minlength=len(sums.labels)).double()
    for i, tau in enumerate(TAU_GRID):
        boxes = model.heatmap_box(heatmaps, size, tau)
        hits, _ = iou_hits(boxes.cpu(), gt)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).cpu() / frame
        sums.counts[i] += torch.tensor([float(hits.sum()), float((area > WHOLE_AREA).sum()), len(labels)])
        if reference is not None and sums.features is not None:
            crops = crop_and_resize(images, boxes, model.image_size)
            pooled = F.normalize(reference(crops).float().mean(dim=(2, 3)), dim=1).double().cpu()
            sums.features[i].index_add_(0, labels, pooled)
            sums.squares[i] += float(pooled.pow(2).sum())


@torch.no_grad()
def measure_localizer(run: Run, *, with_labels: bool) -> LocalizerCheck:
    """The pass over the training split (all processes together): :class:`LocalizerCheck`."""
    cfg, model = run.cfg, run.model
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    source = crop_source_size(cfg.dataset.image_size, cfg.dataset.crop_source)
    dataset = run.data.get("train", source, plain=True)
    batch = max(1, cfg.stages.localizer.batch_size // run.dist.world_size)
    reference = _reference_features(run) if with_labels else None
    width = model.num_features if reference is not None else None
    sums = _Sums(len(run.classes), width)
    try:
        for images, labels, gt in make_loader(run, dataset, batch, epoch=0, shuffle=False):
            with autocast(run):
                _score_batch(run, sums, to_device(run, images), labels, gt, reference)
    finally:
        for module, mode in modes:
            module.training = mode
    sums.reduce(run)
    images = int(sums.counts[0, 2])
    separability = None
    if sums.features is not None:
        separability = [
            scatter_ratio(sums.features[i], sums.labels, sums.squares[i]) for i in range(len(TAU_GRID))
        ]
    return LocalizerCheck(
        images=images,
        boxes=int(sums.boxes),
        hits=[int(v) for v in sums.counts[:, 0]],
        whole=[int(v) for v in sums.counts[:, 1]],
        separability=separability,
        contrast=float(sums.contrast) / max(images, 1),
    )


def advice(report: dict[str, Any]) -> str | None:
    """Plain words for a degenerate or flat module, with what to change; None when it looks healthy."""
    whole, contrast = report["whole"], report["contrast"]
    if whole < DEGENERATE_SHARE and contrast >= LOW_CONTRAST:
        return None
    what = (
        f"the localization module's boxes cover most of the frame on {100 * whole:.0f} % of the training "
        f"images at tau {report['tau']:g}"
        if whole >= DEGENERATE_SHARE
        else f"the localization module's heatmaps are flat (contrast {contrast:.2f}, below {LOW_CONTRAST})"
    )
    return (
        f"{what}, so the crop stage would train on (nearly) whole images. Try "
        "loss.localizer_target=standardized, more stages.localizer.epochs, model.box_rule=peak, "
        "model.tau_select=auto (or a higher model.tau); or drop localizer and crop from train.stages."
    )


def check_localizer(run: Run) -> dict[str, Any]:
    """Measure the trained module on the training split, set the model's τ (``model.tau_select``) and
    return the ``localizer_check`` record for ``metrics.jsonl`` (with ``advice`` when it is degenerate)."""
    m = run.cfg.model
    select = m.tau_select
    with_labels = select == "labels" or (select == "auto" and not _has_boxes(run))
    check = measure_localizer(run, with_labels=with_labels)
    tau, how = choose_tau(check, select, m.tau)
    at = check.at(min(TAU_GRID, key=lambda t: abs(t - tau)))  # a fixed τ off the grid: the nearest
    run.model.tau = tau
    report: dict[str, Any] = {
        "event": "localizer_check",
        "stage": "localizer",
        "tau": tau,
        "tau_select": how,
        "images": check.images,
        "boxes": check.boxes,
        "contrast": check.contrast,
        **at,
        "per_tau": {str(t): check.at(t) for t in TAU_GRID},
    }
    report["advice"] = advice(report)
    return report


def _has_boxes(run: Run) -> bool:
    dataset = run.data.get("train", run.cfg.dataset.image_size)
    return bool(getattr(dataset, "has_boxes", False))
