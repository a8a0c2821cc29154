"""``elope evaluate``: the one-pass test pipeline of a trained run and its metrics.

Each image goes through the pipeline of the paper's Fig. 1 once: the localization module estimates the
heatmap from a 64×64 copy, the heatmap is min-max normalised and thresholded at τ to a box (Sec. 5), the
image is cropped at the box and resized, and the backbone with k-max pooling, embedding and softmax
classifier labels the crop. Reported:

* ``top1``: softmax top-1 accuracy; ``per_class`` accuracies and their mean ``mean_per_class``;
* ``ncm_top1``: nearest class mean: the class means trained with the embedding loss (Eqs. 5-10) used as
  a classifier on the l2-normalised embedding of the same crop (null when the run has no means);
* ``loc_iou50``: localization accuracy, the fraction of images whose box has IoU ≥ 0.5 with the
  ground-truth box (Table 4, "Localization module"), null when the dataset has no boxes; with
  ``mean_map=True`` (``--mean-map``) also ``mean_map_iou50``: the same for the box from the mean feature
  map of the whole image in the run's stage-1 classifier (``RUN/teacher``, the localization module's
  teacher: Table 4, "ResNet-50 mean feature map"). Ground-truth boxes are used for nothing else;
* ``confused_pairs``: the most frequent off-diagonal entries (true -> predicted) of the confusion matrix.

All accuracies are fractions in [0, 1]. Images are read at the run's crop source size (:func:`elope.data.crop_source_size`) and cropped by
:meth:`elope.ELoPE.crop`, exactly as ``elope predict`` and the crop stages of training do.
``predictions=FILE`` (``--predictions``) writes one JSON line per image (path, true class, top-5 classes
and scores, predicted and ground-truth box in pixels of the original image). The test split is read only
here, never during training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import box_iou
from tqdm import tqdm

from elope.data.errors import DataError, ImageLoadError

__all__ = [
    "CLASS_MEANS_FILE",
    "IOU_THRESHOLD",
    "EvalAccumulator",
    "LoadedRun",
    "confused_pairs",
    "evaluate_command",
    "evaluate_run",
    "iou_hits",
    "load_run",
    "nearest_class_mean",
    "per_class_accuracy",
]

IOU_THRESHOLD = 0.5  # Table 4: a box is correct when IoU >= 0.5 with the ground truth
CLASS_MEANS_FILE = "class_means.safetensors"  # RUN/model/class_means.safetensors, key "means" (C, dim)
SPLITS = ("test", "val", "train", "trainval")

# What counts as "this image cannot be read": elope.data.io raises ImageLoadError (an OSError) naming the
# file; PIL's own errors are listed for datasets that open images themselves.
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (
    ImageLoadError,
    OSError,
    SyntaxError,
    Image.DecompressionBombError,
)


# --------------------------------------------------------------------------------------------- run loading
@dataclass
class LoadedRun:
    """A trained model with what ``evaluate`` and ``predict`` need from its run folder."""

    model: torch.nn.Module
    meta: dict[str, Any]
    classes: list[str]
    tau: float
    image_size: int
    means: Tensor | None  # (C, dim) class means of the embedding loss, None when the run has none
    model_dir: Path

    @property
    def crop_source(self) -> int:
        """Side of the images the crops are cut from (runs before it was recorded cropped at image_size)."""
        return int(self.meta.get("crop_source") or self.image_size)

    def load_teacher(self) -> torch.nn.Module:
        """The run's stage-1 classifier (``RUN/teacher``), the localization module's teacher, in eval mode."""
        from elope.nn.weights import load_model

        folder = self.model_dir.parent / "teacher"
        if not (folder / "model.json").is_file():
            raise FileNotFoundError(
                f"{folder} not found: the run keeps no stage-1 classifier (trained before elope 0.2, or "
                "without the classifier stage), so Table 4's mean-feature-map row cannot be measured."
            )
        teacher, _ = load_model(folder)
        return teacher.to(next(self.model.parameters()).device).eval()

    @property
    def normalization(self) -> tuple[Sequence[float], Sequence[float]]:
        """The ``(mean, std)`` the run's images were normalised with (ImageNet's unless recorded)."""
        from elope.data.transforms import IMAGENET_MEAN, IMAGENET_STD

        return self.meta.get("mean") or IMAGENET_MEAN, self.meta.get("std") or IMAGENET_STD

    def load_dataset(
        self, split: str, dataset: str | None = None, root: str | Path | None = None, size: int | None = None
    ) -> Any:
        """``split`` of the run's dataset (or of ``dataset`` at ``root``) with the run's eval transform, at
        ``size`` (default: the crop source, what the one-pass pipeline reads).

        Returns ``(ds, dataset, root)``; raises ValueError when neither the run nor the caller names one.
        """
        from elope.data import build_dataset
        from elope.data.transforms import eval_transform

        dataset = dataset or self.meta.get("dataset")
        root = root or self.meta.get("root")
        if not dataset or not root:
            raise ValueError(
                f"{self.model_dir / 'model.json'} does not record the dataset: pass --dataset and --root."
            )
        transform = eval_transform(size or self.crop_source, *self.normalization)
        return build_dataset(dataset, root, split, transform=transform), dataset, root


def resolve_model_dir(run_dir: str | Path) -> Path:
    """``RUN/model`` (the folder written by :func:`elope.nn.weights.save_model`); ``RUN`` may be it already."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found: pass the folder written by `elope train`.")
    for candidate in (run_dir / "model", run_dir):
        if (candidate / "model.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"{run_dir / 'model' / 'model.json'} not found: is {run_dir} a run folder written by `elope train` "
        "(training writes RUN/model/ at the end of the last stage)?"
    )


def load_class_means(model_dir: Path, num_classes: int) -> Tensor | None:
    """The class means μ (C, dim) saved next to the model; None when the run has none (loss variant none)."""
    path = model_dir / CLASS_MEANS_FILE
    if not path.is_file():
        return None
    from elope.nn.weights import load_state_dict_file

    tensors = load_state_dict_file(path)  # a truncated or foreign file: WeightsError (a ValueError) naming it
    if "means" not in tensors:
        raise ValueError(
            f"{path} has no tensor 'means' (found {sorted(tensors)}): re-save it from ClassMeanLoss."
        )
    means = tensors["means"].float()
    if means.ndim != 2 or means.shape[0] != num_classes:
        raise ValueError(
            f"{path}: 'means' has shape {tuple(means.shape)}, expected ({num_classes}, embedding_dim) "
            "for this model: the file does not belong to this run."
        )
    return means


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load ``RUN/model`` with :func:`elope.nn.weights.load_model`, in eval mode on ``device``."""
    from elope.nn.weights import load_model

    model_dir = resolve_model_dir(run_dir)
    model, meta = load_model(model_dir)
    model = model.to(device).eval()
    num_classes = int(model.classifier.out_features)
    classes = [str(c) for c in meta.get("classes") or [str(i) for i in range(num_classes)]]
    if len(classes) != num_classes:
        raise ValueError(
            f"{model_dir / 'model.json'} lists {len(classes)} classes but the classifier has {num_classes} "
            "outputs: the run folder is inconsistent."
        )
    tau = float(meta.get("tau", getattr(model, "tau", 0.3)))
    image_size = int(meta.get("image_size", getattr(model, "image_size", 448)))
    means = load_class_means(model_dir, num_classes)
    return LoadedRun(
        model, meta, classes, tau, image_size, None if means is None else means.to(device), model_dir
    )


# ---------------------------------------------------------------------------------------------- metrics
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
    """Accumulates per-batch results into the metrics of :func:`evaluate_run`."""

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


# ------------------------------------------------------------------------------------------------ model
@dataclass
class BatchOutputs:
    predictions: Tensor  # (B,) softmax argmax
    top_classes: Tensor  # (B, top) best classes, best first
    top_scores: Tensor  # (B, top) their softmax scores
    boxes: Tensor  # (B, 4) localizer boxes in input pixels
    embeddings: Tensor | None  # (B, dim) raw embeddings of the crops
    mean_map_boxes: Tensor | None  # (B, 4) boxes from the teacher's mean feature map of the whole image


@torch.inference_mode()
def run_batch(
    model: Any, images: Tensor, *, tau: float, embeddings: bool, teacher: Any = None, top: int = 5
) -> BatchOutputs:
    """One pass of the test pipeline on a batch of normalised crop sources.

    ``model.crop`` localizes and crops (Sec. 5) and the crop is classified once: the softmax and the
    embedding for the nearest class mean come from the same forward pass (this is ``model.predict`` with the
    embedding kept). With a ``teacher`` (the stage-1 classifier) its mean feature map of the whole image
    gives the Table 4 baseline box, thresholded at the same τ.
    """
    crops, boxes, _ = model.crop(images, tau=tau)
    if embeddings:
        logits, emb = model(crops, return_embeddings=True)
    else:
        logits, emb = model(crops), None
    scores, classes = logits.float().softmax(dim=1).topk(min(top, logits.shape[1]), dim=1)
    mm_boxes = None if teacher is None else teacher.mean_map(images, tau)[0]
    return BatchOutputs(classes[:, 0], classes, scores, boxes, emb, mm_boxes)


def original_box(box: Tensor, source: int, size: tuple[int, int]) -> list[float]:
    """A box in pixels of the square crop source mapped to the original image of ``size`` (W, H), clamped."""
    w, h = size
    x1, y1, x2, y2 = (box.float() * torch.tensor([w / source, h / source, w / source, h / source])).tolist()
    return [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]


def stored_size(dataset: Any, index: int) -> tuple[int, int]:
    """``(W, H)`` of an image as the dataset loads it (header only; FGVC-Aircraft's banner removed)."""
    from elope.data.io import image_size

    w, h = image_size(dataset.samples[index][0])
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


def gt_box_problems(dataset: Any) -> list[dict[str, str]]:
    """Ground-truth boxes that lie outside their image, as ``elope data check`` finds them (1 pixel of
    tolerance; image sizes from the headers; FGVC-Aircraft's banner rows count as part of the image).

    What evaluation does with them (the dataset clamps every box to its image): a box that sticks out is
    *clipped* and used; a box with nothing inside the image becomes empty and is *left out* of
    ``loc_iou50`` / ``mean_map_iou50`` (``num_boxes`` counts the boxes used). Returns one
    ``{"path", "problem"}`` per such box, reported as ``box_problems``.
    """
    from elope.data.check import BOX_TOLERANCE
    from elope.data.io import image_size

    problems = []
    for (path, _), box in zip(dataset.samples, getattr(dataset, "_boxes", [])):
        if box is None:
            continue
        try:
            width, height = image_size(path)
        except (OSError, ValueError):  # unreadable: reported (or skipped) when the image itself is read
            continue
        x1, y1, x2, y2 = box
        t = BOX_TOLERANCE
        if x1 >= -t and y1 >= -t and x2 <= width + t and y2 <= height + t:
            continue
        empty = min(x2, width) <= max(x1, 0.0) or min(y2, height) <= max(y1, 0.0)
        what = "nothing of it lies inside: left out of the localization metrics" if empty else "clipped to it"
        problems.append(
            {
                "path": str(path),
                "problem": f"ground-truth box x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} lies outside the "
                f"{width}x{height} image; {what}",
            }
        )
    return problems


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


# ------------------------------------------------------------------------------------------------- main
def evaluate_run(
    run_dir: str | Path,
    dataset: str | None = None,
    root: str | Path | None = None,
    split: str = "test",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    skip_unreadable: bool = False,
    *,
    tau: float | None = None,
    num_workers: int = 0,
    progress: bool = True,
    mean_map: bool = False,
    predictions: str | Path | None = None,
    compile_mode: str | None = None,
) -> dict[str, Any]:
    """Evaluate the trained model of ``run_dir`` on a split (``test`` by default) and return the metrics.

    ``mean_map`` also measures the teacher's mean-feature-map boxes (one more backbone pass per image);
    ``predictions`` names a JSON-lines file to write one line per image to. ``compile_mode`` runs the
    model through ``torch.compile`` in that mode (:func:`elope.deploy.compiled.compile_model`).

    ``dataset``/``root`` default to the ones recorded in the run; ``tau`` to the run's threshold (Table 2).
    Returns the dict described in the module docstring plus ``split``, ``dataset``, ``root``, ``run``,
    ``tau`` and ``skipped`` (paths left out with ``skip_unreadable``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    run = load_run(run_dir, device)
    if compile_mode is not None:
        from elope.deploy.compiled import compile_model

        run.model = compile_model(run.model, compile_mode)
    ds, dataset, root = run.load_dataset(split, dataset, root)
    _check_classes(run.classes, ds, f"dataset {dataset!r} at {root} ({split})")
    with_boxes = bool(getattr(ds, "has_boxes", False))
    box_problems = gt_box_problems(ds) if with_boxes else []  # clipped, or left out when wholly outside
    with_ncm = run.means is not None
    tau = run.tau if tau is None else float(tau)

    guarded = _Guarded(ds, skip_unreadable)
    loader = DataLoader(
        guarded, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    teacher = run.load_teacher() if mean_map and with_boxes else None
    acc = EvalAccumulator(len(run.classes), with_ncm=with_ncm, with_boxes=with_boxes)
    skipped: list[dict[str, str]] = []
    lines_out = None
    if predictions is not None:
        Path(predictions).parent.mkdir(parents=True, exist_ok=True)
        lines_out = open(predictions, "w")  # noqa: SIM115 - closed below, written batch by batch
    try:
        for images, labels, gt_boxes, indices, bad in tqdm(
            loader, desc=f"evaluate {split}", unit="batch", disable=not progress
        ):
            skipped += [{"path": guarded.path(i), "error": msg} for i, msg in bad]
            if images is None:
                continue
            out = run_batch(run.model, images.to(device), tau=tau, embeddings=with_ncm, teacher=teacher)
            ncm = (
                nearest_class_mean(out.embeddings, run.means)
                if with_ncm and out.embeddings is not None
                else None
            )
            acc.update(labels, out.predictions, ncm, out.boxes, out.mean_map_boxes, gt_boxes)
            if lines_out is not None:
                for line in prediction_lines(out, labels, gt_boxes, indices, ds, run.crop_source):
                    lines_out.write(line + "\n")
    finally:
        if lines_out is not None:
            lines_out.close()
    if acc.num_images == 0:
        raise ValueError(f"no image of {dataset!r} at {root} ({split}) could be evaluated.")

    result = acc.result(run.classes)
    if getattr(run.model, "localizer", None) is None:
        result["loc_iou50"] = None  # no localization module: the "box" is the whole image
    if teacher is None:
        result["mean_map_iou50"] = None
    result.update(
        split=split, dataset=dataset, root=str(root), run=str(Path(run_dir)), tau=tau, skipped=skipped
    )
    result["box_problems"] = box_problems
    return result


def _pct(value: float | None) -> str:
    return f"{'n/a':>8}" if value is None else f"{100.0 * value:6.2f} %"


def format_report(result: dict[str, Any], worst: int = 5) -> str:
    """The human-readable table printed by ``elope evaluate``."""
    lines = [
        f"{result.get('dataset')}/{result['split']}: {result['num_images']} images, tau {result.get('tau')}",
        f"  top-1 accuracy (softmax)          {_pct(result['top1'])}",
        f"  mean per-class accuracy           {_pct(result['mean_per_class'])}",
        f"  nearest-class-mean top-1          {_pct(result['ncm_top1'])}",
        f"  localization IoU>=0.5 (module)    {_pct(result['loc_iou50'])}",
        f"  localization IoU>=0.5 (mean map)  {_pct(result['mean_map_iou50'])}",
    ]
    ranked = sorted(((a, c) for c, a in result["per_class"].items() if a is not None), key=lambda t: t[0])
    if ranked:
        lines.append(f"lowest per-class accuracy ({min(worst, len(ranked))} of {len(ranked)}):")
        lines += [f"  {_pct(a)}  {c}" for a, c in ranked[:worst]]
    if result["confused_pairs"]:
        lines.append("most confused (true -> predicted: count):")
        lines += [f"  {p['true']} -> {p['predicted']}: {p['count']}" for p in result["confused_pairs"]]
    if result.get("skipped"):
        lines.append(f"skipped {len(result['skipped'])} unreadable image(s):")
        lines += [f"  {s['path']}: {s['error']}" for s in result["skipped"]]
    return "\n".join(lines)


@click.command("evaluate")
@click.option(
    "--run", "run_dir", required=True, type=click.Path(path_type=Path), help="Run folder of `elope train`."
)
@click.option(
    "--dataset",
    default=None,
    help="Dataset name (cub, cars, aircraft, folder, synthetic). Default: the run's.",
)
@click.option(
    "--root", default=None, type=click.Path(path_type=Path), help="Dataset root. Default: the run's."
)
@click.option(
    "--split", default="test", show_default=True, type=click.Choice(SPLITS), help="Split to evaluate."
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda, cuda:1.")
@click.option(
    "--workers", default=0, show_default=True, type=click.IntRange(min=0), help="DataLoader workers."
)
@click.option(
    "--tau",
    default=None,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Box threshold τ. Default: the run's.",
)
@click.option(
    "--skip-unreadable", is_flag=True, help="Leave unreadable images out (listed) instead of failing."
)
@click.option(
    "--json",
    "json_out",
    default=None,
    metavar="FILE|-",
    help="Also write the metrics as JSON ('-': stdout only).",
)
@click.option(
    "--examples",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Also draw N images with their mean-feature-map and localization-module boxes (Figs. 2, 4, 6) "
    "to RUN/examples_<split>.png.",
)
@click.option(
    "--mean-map",
    is_flag=True,
    help="Also measure Table 4's baseline: boxes from the stage-1 classifier's mean feature map "
    "(RUN/teacher; one more backbone pass per image).",
)
@click.option(
    "--predictions",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON line per image (path, true class, top-5, predicted and ground-truth box in "
    "original-image pixels) to this file.",
)
@click.option(
    "--compile",
    "compile_mode",
    default=None,
    is_flag=False,
    flag_value="default",
    type=click.Choice(["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]),
    help="Run the one-pass pipeline through torch.compile (optionally: the mode; reduce-overhead = CUDA "
    "graphs).",
)
def evaluate_command(
    run_dir: Path,
    dataset: str | None,
    root: Path | None,
    split: str,
    batch_size: int,
    device: str,
    workers: int,
    tau: float | None,
    skip_unreadable: bool,
    json_out: str | None,
    examples: int,
    mean_map: bool,
    predictions: Path | None,
    compile_mode: str | None,
) -> None:
    """Evaluate a trained run: top-1, per-class and nearest-class-mean accuracy, localization (Table 4).

    Example: elope evaluate --run runs/cub --json metrics.json
    """
    try:
        result = evaluate_run(
            run_dir,
            dataset,
            root,
            split,
            batch_size,
            device,
            skip_unreadable,
            tau=tau,
            num_workers=workers,
            mean_map=mean_map,
            predictions=predictions,
            compile_mode=compile_mode,
        )
    except (FileNotFoundError, ValueError, DataError, UnreadableImageError) as e:
        from elope.failures import one_line

        raise click.ClickException(one_line(e)) from e  # without a DataLoader worker's traceback
    for problem in result.get("box_problems", [])[:10]:
        click.echo(f"warning: {problem['path']}: {problem['problem']}", err=True)
    if len(result.get("box_problems", [])) > 10:
        click.echo(
            f"warning: {len(result['box_problems']) - 10} more box problem(s) (box_problems)", err=True
        )
    if examples:
        from elope.tasks.examples import localization_examples

        sheet = localization_examples(
            run_dir, Path(run_dir) / f"examples_{split}.png", examples, split=split, device=device, tau=tau
        )
        click.echo(f"examples drawn to {sheet}", err=True)
    if json_out == "-":
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(format_report(result))
    if json_out:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"metrics written to {path}", err=True)
