"""The end of stage 2 (Sec. 5): the box threshold τ chosen on the training split, and a check of the
localization module before the crop stage spends its epochs on the module's boxes.

One pass over the training split (no augmentation; the crop source, as the one-pass pipeline reads it)
measures, for every τ of :data:`TAU_GRID`, with the model's box rule and upsampling:

* ``iou50``: the share of boxes with IoU ≥ 0.5 against the training boxes, where the dataset has them
  (the boxes are used for nothing else: the module never sees them);
* ``whole``: the share of boxes that cover more than :data:`WHOLE_AREA` of the frame;
* ``separability`` (only when τ is chosen by class labels, for every other τ of the grid): how well the
  crops' features separate the classes, the leave-one-out nearest-class-mean accuracy of their
  l2-normalised pooled features (:func:`loo_ncm_correct`) in the backbone as the recipe initialises it
  (ImageNet: the crop stage's starting point), :func:`reference_features`;

and the heatmaps' ``contrast`` (:func:`heatmap_contrast`). ``model.tau_select`` then sets the model's τ:
``fixed`` keeps ``model.tau`` (the paper's Table 2 values); ``boxes`` takes the τ with the most IoU hits on
the training boxes; ``labels`` the τ whose crops a nearest class mean in ImageNet features tells apart best
(a probe of how well the crop stage can learn from them; on the development sets it chose the τ of the
boxes, or one grid step from it); ``auto`` is ``boxes`` where the training split has boxes that the module
finds at some τ (IoU >= 0.5 on at least :data:`MISSING_IOU50` of them) and ``labels`` otherwise: where it has
none, and where every τ's hits are too few to choose by (then a second pass measures the labels criterion).
The result goes to ``metrics.jsonl`` as one ``{"event": "localizer_check", ...}`` record, and a degenerate module (most boxes ≈ the whole frame) is
reported in plain words with what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from elope.config import Config
from elope.engine import distributed as D
from elope.engine.loop import evaluation_pass, make_loader
from elope.engine.plan import StagePlan
from elope.engine.run import Run
from elope.engine.run_spec import run_spec
from elope.engine.stages import make_model
from elope.evaluation.metrics import iou_hits
from elope.evaluation.outputs import Want
from elope.failures import TrainingError
from elope.nn.crop import crop_and_resize
from elope.nn.model import ELoPE
from elope.nn.modes import evaluating

__all__ = [
    "DEGENERATE_SHARE",
    "LABEL_TAUS",
    "MISSING_IOU50",
    "TAU_GRID",
    "WHOLE_AREA",
    "LocalizerCheck",
    "boxes_decide",
    "check_localizer",
    "choose_tau",
    "describe_check",
    "heatmap_contrast",
    "loo_ncm_correct",
    "measure_localizer",
    "new_sums",
    "reference_features",
    "score_batch",
]

#: The thresholds τ tried (0.10, 0.15, ..., 0.90).
TAU_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(2, 19))
#: Those the labels criterion tries (each costs a pass of the backbone over the training split).
LABEL_TAUS: tuple[float, ...] = TAU_GRID[::2]
#: A box "covers most of the frame" above this share of the frame's area.
WHOLE_AREA = 0.8
#: A module whose boxes cover most of the frame on at least this share of the training images is degenerate.
DEGENERATE_SHARE = 0.5
#: Heatmaps whose contrast (:func:`heatmap_contrast`) is below this are flat.
LOW_CONTRAST = 0.5
#: Where the data have boxes: a module whose boxes reach IoU >= 0.5 on fewer training images than this at
#: every τ gives the box criterion nothing to choose τ by, and ``tau_select: auto`` uses the labels criterion
#: (on the suite's small centred critters the hits were 0.3-1.4 %, and the τ they picked, 0.85-0.9, cut crops
#: that missed the critter: 24 and 38 points below GAP; `docs/results.md`).
MISSING_IOU50 = 0.10


def heatmap_contrast(heatmaps: Tensor) -> Tensor:
    """Per map, 1 − the mean of the min-max normalised heatmap, (B, 1, h, w) → (B,): 1 for a single peak on
    a flat floor, about 0.5 for a texture as much high as low, 0 for a constant map."""
    flat = heatmaps.float().flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    span = high - low
    normalised = (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny)
    return torch.where(span[:, 0] > 0, 1 - normalised.mean(1), torch.zeros_like(span[:, 0]))


def loo_ncm_correct(features: Tensor, labels: Tensor, class_sums: Tensor, counts: Tensor) -> int:
    """How many of ``features`` (l2-normalised, (N, D)) their nearest class mean classifies correctly when
    the feature itself is left out of its own class's mean (leave-one-out), cosine similarity.

    ``class_sums`` (C, D) and ``counts`` (C,) hold the sums over all features of each class (this process's
    and the others'), so the sums pass between processes, not the features. Only a feature's own class mean
    changes when it is left out, so the scores cost one (N, C) product and one (N, D) correction.
    """
    if len(features) == 0:
        return 0
    f, sums = features.double(), class_sums.double()
    scores = f @ F.normalize(sums, dim=1).T  # (N, C): every class mean with the feature in it
    own = sums[labels] - f  # its own class without it (a mean's scale does not change the cosine)
    alone = counts[labels] <= 1  # no other member: that class cannot be chosen
    own_score = torch.where(alone, torch.full_like(own[:, 0], -2.0), (F.normalize(own, dim=1) * f).sum(1))
    scores[torch.arange(len(f)), labels] = own_score
    scores[:, counts == 0] = -2.0
    return int((scores.argmax(dim=1) == labels).sum())


@dataclass
class LocalizerCheck:
    """What the pass measured: per τ of :data:`TAU_GRID`, and overall."""

    images: int
    boxes: int  # training images with a ground-truth box
    hits: list[int]  # per τ: boxes with IoU >= 0.5
    whole: list[int]  # per τ: boxes covering more than WHOLE_AREA of the frame
    separability: list[float | None] | None  # per τ of LABEL_TAUS: the crops' LOO NCM accuracy (labels)
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
    separability of the crops' features (ties: the smaller τ); ``auto``: ``boxes`` when the module finds the
    training boxes at some τ (:func:`boxes_decide`), else ``labels``.
    """
    if select == "auto":
        select = "boxes" if boxes_decide(check) else "labels"
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
        scores = [-1.0 if v is None else v for v in check.separability]
    best = max(range(len(TAU_GRID)), key=lambda i: (scores[i], -i))
    return TAU_GRID[best], select


def boxes_decide(check: LocalizerCheck) -> bool:
    """Whether the training boxes can choose τ: the split has boxes and at some τ at least
    :data:`MISSING_IOU50` of them are hit (IoU >= 0.5); below that every τ's hits are noise."""
    return bool(check.boxes) and max(check.hits) >= MISSING_IOU50 * check.boxes


def reference_features(cfg: Config, num_classes: int) -> torch.nn.Module:
    """The features the labels criterion scores crops in: the backbone as the recipe initialises it (with
    ImageNet or ``model.weights``: the crop stage's starting point with ``stages.crop.init: fresh``), in
    eval mode. Never the trained classifier: it has learned its training images, whole, and rates every
    crop below them (on the development sets it chose the smallest τ every time)."""
    with torch.random.fork_rng(devices=[]):  # the run's random stream stays as it was
        return make_model(cfg, num_classes, run_spec(cfg)).features.eval()


class _Sums:
    """What the pass accumulates: per τ hits and whole-frame boxes; for the labels criterion, the crops'
    pooled features of this process (per τ of :data:`LABEL_TAUS`) and their labels."""

    def __init__(self, classes: int, width: int | None) -> None:
        self.classes, self.width = classes, width
        self.counts = torch.zeros(len(TAU_GRID), 3, dtype=torch.float64)  # hits, whole, images
        self.boxes = torch.zeros(1, dtype=torch.float64)
        self.contrast = torch.zeros(1, dtype=torch.float64)
        self.features: dict[float, list[Tensor]] | None = (
            None if width is None else {t: [] for t in LABEL_TAUS}
        )
        self.labels: list[Tensor] = []

    def result(self, dist: D.DistInfo) -> LocalizerCheck:
        """Sum over processes (the nearest-class-mean accuracy of every process's crops against the class
        means of all of them) and return the :class:`LocalizerCheck`."""
        counts, boxes, contrast = (
            D.all_reduce_sum(t, dist) for t in (self.counts, self.boxes, self.contrast)
        )
        images = int(counts[0, 2])
        separability = None
        if self.features is not None:
            labels = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.long)
            scores = {t: self._ncm(f, labels, dist) for t, f in self.features.items()}
            separability = [scores.get(t) for t in TAU_GRID]
        return LocalizerCheck(
            images=images,
            boxes=int(boxes),
            hits=[int(v) for v in counts[:, 0]],
            whole=[int(v) for v in counts[:, 1]],
            separability=separability,
            contrast=float(contrast) / max(images, 1),
        )

    def _ncm(self, parts: list[Tensor], labels: Tensor, dist: D.DistInfo) -> float:
        features = torch.cat(parts) if parts else torch.zeros(0, self.width or 1)
        sums = torch.zeros(self.classes, features.shape[1], dtype=torch.float64)
        sums.index_add_(0, labels, features.double())
        counts = torch.bincount(labels, minlength=self.classes).double()
        sums, counts = D.all_reduce_sum(sums, dist), D.all_reduce_sum(counts, dist)
        correct = torch.tensor([float(loo_ncm_correct(features, labels, sums, counts))], dtype=torch.float64)
        return float(D.all_reduce_sum(correct, dist)) / max(float(counts.sum()), 1.0)


def score_batch(
    model: ELoPE, sums: _Sums, batch: list[Any], heatmaps: Tensor, reference: torch.nn.Module | None
) -> None:
    """One batch of the pass, ``(images, labels, gt)`` and the module's heatmaps of its images (computed
    once, :class:`elope.evaluation.outputs.Want` ``heatmaps``): the boxes (and crops) at every τ."""
    images, labels, gt = batch
    size = images.shape[-2:]
    heatmaps = heatmaps.float()
    sums.contrast += float(heatmap_contrast(heatmaps).sum())
    _, valid = iou_hits(torch.zeros_like(gt), gt)
    sums.boxes += float(valid.sum())
    frame = float(size[0] * size[1])
    if sums.features is not None:
        sums.labels.append(labels.cpu())
    for i, tau in enumerate(TAU_GRID):
        boxes = model.heatmap_box(heatmaps, tau, size)
        hits, _ = iou_hits(boxes.cpu(), gt)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).cpu() / frame
        sums.counts[i] += torch.tensor([float(hits.sum()), float((area > WHOLE_AREA).sum()), len(labels)])
        if reference is not None and sums.features is not None and tau in LABEL_TAUS:
            crops = crop_and_resize(images, model.crop_box(boxes, size), model.spec.image_size)
            sums.features[tau].append(F.normalize(reference(crops).float().mean(dim=(2, 3)), dim=1).cpu())


def new_sums(classes: int, width: int | None = None) -> _Sums:
    """Empty sums for a pass; ``width``: the reference features' width, for the labels criterion."""
    return _Sums(classes, width)


@torch.no_grad()
def measure_localizer(run: Run, plan: StagePlan, *, with_labels: bool) -> LocalizerCheck:
    """The pass over the training split (all processes together) at the crop source, with the loader,
    batch and precision of the localizer stage's ``plan``: :class:`LocalizerCheck`."""
    model = run.model
    dataset = run.data.get("train", model.spec.crop_source, plain=True)
    reference = reference_features(run.cfg, len(run.classes)).to(plan.device) if with_labels else None
    sums = new_sums(len(run.classes), None if reference is None else model.num_features)
    loader = make_loader(dataset, max(1, plan.local_batch), plan.loader, epoch=0, shuffle=False)
    want = Want(pipeline="heatmaps", top=0, boxes=False)
    with evaluating(model):
        for batch, out in evaluation_pass(
            model, loader, plan, "[localizer] check on the training split", want
        ):
            if out is not None and out.heatmaps is not None:
                with plan.autocast():
                    score_batch(model, sums, batch, out.heatmaps, reference)
    return sums.result(run.dist)


def advice(report: dict[str, Any], cfg: Config) -> str | None:
    """Plain words for a module whose boxes miss the objects, cover the frame or come from flat maps, with
    what to change (only what differs from the run's own recipe ``cfg``); None when it looks healthy."""
    whole, contrast, iou50 = report["whole"], report["contrast"], report.get("iou50")
    if iou50 is not None and iou50 < MISSING_IOU50 and whole < DEGENERATE_SHARE:
        return _missed_advice(report, iou50)
    if whole < DEGENERATE_SHARE and contrast >= LOW_CONTRAST:
        return None
    what = (
        f"the localization module's boxes cover most of the frame on {100 * whole:.0f} % of the training "
        f"images at tau {report['tau']:g}"
        if whole >= DEGENERATE_SHARE
        else f"the localization module's heatmaps are flat (contrast {contrast:.3f}, below {LOW_CONTRAST})"
    )
    tries = [
        *(["loss.localizer_target=standardized"] if cfg.loss.localizer_target != "standardized" else []),
        "more stages.localizer.epochs",
        *(["model.box_rule=peak"] if cfg.model.box_rule != "peak" else []),
        "model.tau_select=auto (or a higher model.tau)"
        if cfg.model.tau_select != "auto"
        else f"a fixed model.tau above {report['tau']:g} (model.tau_select=fixed)",
    ]
    return (
        f"{what}, so the crop stage would train on (nearly) whole images. Try {', '.join(tries)}; or drop "
        "localizer and crop from train.stages."
    )


def _missed_advice(report: dict[str, Any], iou50: float) -> str:
    """:func:`advice` for boxes that match under :data:`MISSING_IOU50` of the training boxes: at every τ (so
    ``auto`` chose τ by the labels), or at the τ chosen otherwise."""
    hint = (
        "For small objects try a larger dataset.image_size (a finer heatmap) or more stages.localizer.epochs"
    )
    if report.get("tau_select") == "labels":
        best = max(v["iou50"] for v in report["per_tau"].values())
        return (
            f"the localization module's boxes match the training boxes (IoU >= 0.5) on at most {100 * best:.1f} % "
            f"of the training images at any tau, too few to choose tau by, so tau {report['tau']:g} was chosen by "
            "class labels (the tau whose crops ImageNet features tell apart best); the crops may hold the objects "
            f"only loosely. {hint}; compare with a run without localizer and crop in train.stages."
        )
    return (
        f"the localization module's boxes match the training boxes (IoU >= 0.5) on only {100 * iou50:.1f} % "
        f"of the training images at its best tau {report['tau']:g}, so most crops will miss the object and "
        f"the crop stage can do worse than whole images. {hint}; or drop localizer and crop from train.stages."
    )


def check_localizer(run: Run, plan: StagePlan) -> dict[str, Any]:
    """Measure the trained module on the training split and return the ``localizer_check`` record for
    ``metrics.jsonl`` (with ``advice`` when it is degenerate); its ``tau`` is the τ ``model.tau_select``
    chose, which the caller installs in the model's spec."""
    m = run.cfg.model
    select = m.tau_select
    with_labels = select == "labels" or (select == "auto" and not _has_boxes(run))
    check = measure_localizer(run, plan, with_labels=with_labels)
    if select == "auto" and not with_labels and not boxes_decide(check):  # boxes too few to choose by
        check = measure_localizer(run, plan, with_labels=True)
    tau, how = choose_tau(check, select, m.tau)
    at = check.at(min(TAU_GRID, key=lambda t: abs(t - tau)))  # a fixed τ off the grid: the nearest
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
    report["advice"] = advice(report, run.cfg)
    if how == "labels" and not (m.pretrained or m.weights):
        report["note"] = (
            "tau was chosen by class labels in features of an untrained backbone (model.pretrained is "
            "false), which say little about the crops; prefer a fixed model.tau (model.tau_select=fixed)"
        )
    return report


def _has_boxes(run: Run) -> bool:
    return bool(getattr(run.train_set, "has_boxes", False))


def describe_check(report: dict[str, Any]) -> str:
    """The ``localizer_check`` record in one line, and its warnings (advice, note) on the lines after."""
    iou = "" if report["iou50"] is None else f", IoU >= 0.5 on {100 * report['iou50']:.1f} % of the boxes"
    lines = [
        f"[localizer] check on {report['images']} training images: tau {report['tau']:g} "
        f"({report['tau_select']}){iou}, {100 * report['whole']:.0f} % of the boxes cover most of the "
        f"frame, heatmap contrast {report['contrast']:.2f}"
    ]
    lines += [f"warning: {report[key]}" for key in ("advice", "note") if report.get(key)]
    return "\n".join(lines)
