"""``elope evaluate``: the one-pass test pipeline of a trained run and its metrics.

Each image goes through the one-pass pipeline of the paper's Fig. 1 once (``docs/architecture.md``, "The
pipeline"), at the run's spec. Reported:

* ``top1``: softmax top-1 accuracy; ``per_class`` accuracies and their mean ``mean_per_class``;
* ``ncm_top1``: nearest class mean: the class means trained with the embedding loss (Eqs. 5-10) used as
  a classifier on the l2-normalised embedding of the same crop (null when the run has no means);
* ``loc_iou50``: localization accuracy, the fraction of images whose box has IoU ≥ 0.5 with the
  ground-truth box (Table 4, "Localization module"), null when the dataset has no boxes; with
  ``mean_map=True`` (``--mean-map``) also ``mean_map_iou50``: the same for the box from the mean feature
  map of the whole image in the run's stage-1 classifier (``RUN/teacher``, the localization module's
  teacher: Table 4, "ResNet-50 mean feature map"). Ground-truth boxes are used for nothing else;
* ``localization``: the localization metrics of the field for the module and (``mean_map``) the mean map:
  GT-known and top-1 localization accuracy and MaxBoxAccV2, its heatmap thresholds chosen on the run's
  validation or training split, never on the evaluated one (:mod:`elope.tasks.evaluate_localization`,
  ``docs/architecture.md``, "Evaluation metrics"); null when the dataset has no boxes;
* ``confused_pairs``: the most frequent off-diagonal entries (true -> predicted) of the confusion matrix;
* ``trained_on_split`` (with the other keys :func:`evaluate_run` adds): True when the split holds images
  the model was trained on (the run's own data, a split other than ``test``:
  :meth:`elope.runs.loaded.LoadedRun.trained_on`); its scores then measure how well the model fits its
  training data, not its accuracy, and ``elope evaluate`` says so;
* ``tta``: with ``tta="flip"`` (``--tta flip``) the same accuracies with the softmax averaged over the views
  of the crop (:mod:`elope.nn.tta`), beside the single-view ones above (which stay what they are without
  it): ``{"views", "top1", "mean_per_class", "ncm_top1", "per_class"}``; null without ``tta``.

All accuracies are fractions in [0, 1]. Images are read at the run's crop source (``spec.crop_source``)
and cropped by :meth:`elope.ELoPE.crop`, exactly as ``elope predict`` and the crop stages of training do
(the pipeline: ``docs/architecture.md``).
``predictions=FILE`` (``--predictions``) writes one JSON line per image (path, true class, top-5 classes
and scores, predicted and ground-truth box in pixels of the original image). The test split is read only
here, never during training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from elope import writer
from elope.data.check import gt_box_problems
from elope.data.errors import ImageLoadError
from elope.data.io import image_dimensions
from elope.data.splits import SPLITS
from elope.data.workers import usable_workers
from elope.deploy.compiled import compile_model
from elope.evaluation.loop import iterate
from elope.evaluation.metrics import EvalAccumulator, nearest_class_mean
from elope.evaluation.outputs import BatchOutputs, Want
from elope.nn.model import ELoPE
from elope.nn.tta import check_tta
from elope.runs.loaded import LoadedRun, load_run
from elope.tasks.evaluate_localization import FieldLocalization, field_localization

__all__ = [
    "SPLITS",
    "UNREADABLE_ERRORS",
    "EvaluateSettings",
    "UnreadableImageError",
    "evaluate_run",
    "gt_box_problems",
    "original_box",
    "prediction_lines",
]

# What counts as "this image cannot be read": elope.data.io raises ImageLoadError (an OSError) naming the
# file; PIL's own errors are listed for datasets that open images themselves.
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (
    ImageLoadError,
    OSError,
    SyntaxError,
    Image.DecompressionBombError,
)


# ------------------------------------------------------------------------------------------------ lines
def original_box(box: Tensor, source: int, size: tuple[int, int]) -> list[float]:
    """A box in pixels of the square crop source mapped to the original image of ``size`` (W, H), clamped."""
    w, h = size
    x1, y1, x2, y2 = (box.float() * torch.tensor([w / source, h / source, w / source, h / source])).tolist()
    return [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]


def stored_size(dataset: Any, index: int) -> tuple[int, int]:
    """``(W, H)`` of an image as the dataset loads it (header only: upright, FGVC-Aircraft's banner removed)."""
    w, h = image_dimensions(dataset.samples[index][0], oriented=True)
    return w, h - int(getattr(dataset, "banner", 0) or 0)


def prediction_lines(
    out: BatchOutputs, labels: Tensor, gt_boxes: Tensor, indices: list[int], dataset: Any, source: int
) -> list[str]:
    """One JSON line per image of the batch (``evaluate --predictions``), boxes in original pixels."""
    lines = []
    for j, index in enumerate(indices):
        size = stored_size(dataset, index)
        gt = gt_boxes[j]
        item = {
            "path": str(dataset.samples[index][0]),
            "true": dataset.classes[int(labels[j])],
            "classes": [
                {"class": dataset.classes[int(c)], "index": int(c), "score": float(p)}
                for c, p in zip(out.top_classes[j].tolist(), out.top_scores[j].tolist())
            ],
            "box": original_box(out.boxes[j].cpu(), source, size),
            "gt_box": original_box(gt, source, size) if bool(torch.isfinite(gt).all()) else None,
            "size": list(size),
        }
        lines.append(json.dumps(item))
    return lines


# ------------------------------------------------------------------------------------------------- data
class UnreadableImageError(RuntimeError):
    """An image of the dataset could not be read; the message names the file."""


class _Guarded(Dataset):
    """Dataset wrapper: items carry their index; unreadable images become None (skip) or a clear error.

    The dataset's own ``skip_unreadable`` substitutes the next readable image (right for training batches);
    for metrics that would count an image twice, so here an unreadable image is left out and listed.
    """

    def __init__(self, dataset: Any, skip: bool) -> None:
        self.dataset, self.skip = dataset, skip

    def __len__(self) -> int:
        return len(self.dataset)

    def path(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)
        return str(samples[index][0]) if samples is not None else f"item {index}"

    def __getitem__(self, index: int) -> tuple[Any, ...] | tuple[None, int, str]:
        try:
            image, label, box = self.dataset[index]
        except UNREADABLE_ERRORS as e:
            if self.skip:
                return (None, index, f"{type(e).__name__}: {e}")
            raise UnreadableImageError(
                f"cannot read {self.path(index)} ({type(e).__name__}: {e}); fix or remove the file, or pass "
                "--skip-unreadable to leave it out of the metrics."
            ) from e
        return (image, int(label), torch.as_tensor(box, dtype=torch.float32).reshape(4), index)


def _collate(
    items: list[tuple[Any, ...]],
) -> tuple[Tensor | None, Tensor, Tensor, list[int], list[tuple[int, str]]]:
    good = [it for it in items if it[0] is not None]
    bad = [(it[1], it[2]) for it in items if it[0] is None]
    if not good:
        return None, torch.empty(0, dtype=torch.long), torch.empty(0, 4), [], bad
    images = torch.stack([it[0] for it in good])
    labels = torch.tensor([it[1] for it in good])
    boxes = torch.stack([it[2] for it in good])
    return images, labels, boxes, [it[3] for it in good], bad


def _check_classes(run_classes: list[str], dataset: Any, where: str) -> None:
    ds_classes = [str(c) for c in getattr(dataset, "classes", run_classes)]
    if len(ds_classes) != len(run_classes):
        raise ValueError(
            f"{where} has {len(ds_classes)} classes but the model was trained on {len(run_classes)}: "
            "evaluate on the dataset the run was trained on (--dataset/--root)."
        )
    if ds_classes != run_classes:
        raise ValueError(
            f"the class names of {where} differ from those the model was trained on "
            f"(first difference: {next((a, b) for a, b in zip(ds_classes, run_classes) if a != b)}): "
            "evaluate on the dataset the run was trained on (--dataset/--root)."
        )


@contextmanager
def _predictions_file(predictions: str | Path | None) -> Iterator[TextIO | None]:
    """The ``--predictions`` file opened for writing (its folder made), closed afterwards; None without one."""
    if predictions is None:
        yield None
        return
    with writer.open_write(predictions, "w") as lines_out:
        yield lines_out


def _accumulate(
    run: LoadedRun,
    passes: Iterable[tuple[list[Any], BatchOutputs | None]],
    guarded: _Guarded,
    acc: EvalAccumulator,
    lines_out: TextIO | None,
    *,
    tta: tuple[str, EvalAccumulator] | None = None,
    field: FieldLocalization | None = None,
) -> list[dict[str, str]]:
    """Every batch of the pass (:func:`elope.evaluation.loop.iterate`) into ``acc`` (and ``lines_out``;
    with ``tta``, its views' accuracies into its accumulator; with ``field``, the localization metrics of
    the field); returns the skipped images."""
    skipped: list[dict[str, str]] = []
    for (_, labels, gt_boxes, indices, bad), out in passes:
        skipped += [{"path": guarded.path(i), "error": msg} for i, msg in bad]
        if out is None:
            continue
        if tta is not None and out.tta_predictions is not None:
            tta_ncm = (
                None if out.tta_embeddings is None else nearest_class_mean(out.tta_embeddings, run.means)
            )
            tta[1].update(labels, out.tta_predictions, tta_ncm)
        ncm = (
            nearest_class_mean(out.embeddings, run.means)
            if acc.with_ncm and out.embeddings is not None
            else None
        )
        acc.update(labels, out.predictions, ncm, out.boxes, out.mean_map_boxes, gt_boxes)
        if field is not None:
            field.update(labels, gt_boxes, out)
        if lines_out is not None:
            for line in prediction_lines(
                out, labels, gt_boxes, indices, guarded.dataset, run.spec.crop_source
            ):
                lines_out.write(line + "\n")
    return skipped


def _tta_accumulator(tta: str | None, acc: EvalAccumulator) -> tuple[str, EvalAccumulator] | None:
    """The views and an accumulator of their accuracies (classes, no boxes), None without ``tta``."""
    if tta is None:
        return None
    return tta, EvalAccumulator(acc.num_classes, with_ncm=acc.with_ncm, with_boxes=False)


def _tta_metrics(tta: tuple[str, EvalAccumulator] | None, run: LoadedRun) -> dict[str, Any] | None:
    """The accuracies with test-time augmentation (``result["tta"]``), None without it."""
    if tta is None:
        return None
    views, acc = tta
    result = acc.result(run.classes)
    keys = ("top1", "mean_per_class", "ncm_top1", "per_class")
    return {"views": views, **{key: result[key] for key in keys}}


def _metrics(
    acc: EvalAccumulator, run: LoadedRun, teacher: ELoPE | None, tta: tuple[str, EvalAccumulator] | None
) -> dict[str, Any]:
    """The accumulated metrics, null where this run measures nothing (no localizer, no teacher, no
    test-time augmentation)."""
    result = acc.result(run.classes)
    result["tta"] = _tta_metrics(tta, run)
    if getattr(run.model, "localizer", None) is None:
        result["loc_iou50"] = None  # no localization module: the "box" is the whole image
    if teacher is None:
        result["mean_map_iou50"] = None
    return result


def _loader(ds: Any, batch_size: int, workers: int, skip_unreadable: bool) -> tuple[_Guarded, DataLoader]:
    """The split's images with their indices, an unreadable one left out (``skip_unreadable``) or refused."""
    guarded = _Guarded(ds, skip_unreadable)
    loader = DataLoader(
        guarded, batch_size=batch_size, num_workers=usable_workers(workers), collate_fn=_collate
    )
    return guarded, loader


def _check_arguments(split: str, batch_size: int, tta: str | None) -> None:
    """``evaluate_run``'s arguments checked before anything is loaded."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    check_tta(tta)


# ------------------------------------------------------------------------------------------------- main
@dataclass(frozen=True)
class EvaluateSettings:
    """How :func:`evaluate_run` reads the split and what it measures besides the pipeline's metrics (its
    keyword arguments; a name not here is refused)."""

    batch_size: int = 16
    num_workers: int = 0  # DataLoader processes
    skip_unreadable: bool = False  # an unreadable image left out (listed under ``skipped``), else an error
    progress: bool = True
    mean_map: bool = False  # the teacher's mean feature map too (Table 4's other row)
    predictions: str | Path | None = None  # a JSON-lines file, one line per image
    compile_mode: str | None = None  # torch.compile (elope.deploy.compiled.compile_model)
    allow_unfinished: bool = False
    tta: str | None = None  # test-time augmentation (elope.nn.tta): result["tta"]
    maxboxacc: bool = True  # MaxBoxAccV2 and its pass over the selection split


def evaluate_run(
    run_dir: str | Path,
    dataset: str | None = None,
    root: str | Path | None = None,
    split: str = "test",
    device: str | torch.device = "cpu",
    *,
    tau: float | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate the trained model of ``run_dir`` on a split (``test`` by default) and return the metrics.

    ``settings`` (:class:`EvaluateSettings`): ``mean_map`` also measures the teacher's mean-feature-map
    boxes (one more backbone pass per image); ``predictions`` names a JSON-lines file to write one line per
    image to. ``compile_mode`` runs the model through ``torch.compile`` in that mode
    (:func:`elope.deploy.compiled.compile_model`); ``tta`` (``"flip"``) adds ``result["tta"]``, the
    accuracies with test-time augmentation (:mod:`elope.nn.tta`). ``maxboxacc=False`` skips MaxBoxAccV2
    and its pass over the selection split (then null).

    ``dataset``/``root`` default to the run's; ``tau`` replaces its threshold (the model is loaded with it).
    An unfinished run is refused unless ``allow_unfinished`` (``LoadedRun.check_finished``). Returns the
    dict of the module docstring plus ``split``, ``dataset``, ``root``, ``run``, ``tau``, ``skipped``
    (left out with ``skip_unreadable``), ``stages`` (done) and ``unfinished`` (a warning, or None)."""
    o = EvaluateSettings(**settings)
    _check_arguments(split, o.batch_size, o.tta)
    run = load_run(run_dir, device, tau=tau)
    unfinished = run.check_finished(o.allow_unfinished)
    if o.compile_mode is not None:
        run.model = compile_model(run.model, o.compile_mode)
    ds, dataset, root = run.load_dataset(split, dataset, root)
    _check_classes(run.classes, ds, f"dataset {dataset!r} at {root} ({split})")
    with_boxes = bool(getattr(ds, "has_boxes", False))
    box_problems = gt_box_problems(ds) if with_boxes else []  # clipped, or left out when wholly outside
    guarded, loader = _loader(ds, o.batch_size, o.num_workers, o.skip_unreadable)
    teacher = run.load_teacher() if o.mean_map and with_boxes else None
    acc = EvalAccumulator(len(run.classes), with_ncm=run.means is not None, with_boxes=with_boxes)
    views = _tta_accumulator(o.tta, acc)
    field = field_localization(
        run, with_boxes=with_boxes, mean_map=teacher is not None, maxboxacc=o.maxboxacc
    )
    predictor = run.predictor(teacher=teacher, tta=o.tta)
    with _predictions_file(o.predictions) as lines_out:
        bar = f"evaluate {split}" if o.progress else None
        passes = iterate(predictor, loader, Want(embeddings=acc.with_ncm), progress=bar)
        skipped = _accumulate(run, passes, guarded, acc, lines_out, tta=views, field=field)
    if acc.num_images == 0:
        raise ValueError(f"no image of {dataset!r} at {root} ({split}) could be evaluated.")
    result = _metrics(acc, run, teacher, views)
    where, reading = (split, dataset, root), (o.batch_size, o.num_workers, o.skip_unreadable)
    result["localization"] = None if field is None else field.result(run, teacher, where, reading)
    result.update(split=split, dataset=dataset, root=str(root), run=str(Path(run_dir)), tau=run.spec.tau)
    result.update(skipped=skipped, box_problems=box_problems, stages=run.stages_done, unfinished=unfinished)
    result.update(trained_on_split=run.trained_on(split, dataset, root))  # training images: not a test
    return result
