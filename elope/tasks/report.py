"""``elope evaluate --report DIR``: the evaluation as files a person opens and a program reads.

Written into ``DIR`` from the per-image predictions of the one-pass pipeline (the lines of ``evaluate
--predictions``, ``DIR/predictions.jsonl``):

* ``metrics.json``: top-1 and top-5 accuracy, mean per-class accuracy, number of images, the worst pairs;
* ``per_class.csv``: per class precision, recall, F1 and support (images of the class);
* ``confusion.csv``: the full confusion matrix (rows: true class, columns: predicted class, in class order)
  and ``confusion.png`` (:func:`elope.tasks.report_html.confusion_figure`: log colour scale, readable at
  200 classes, the most confused pairs labelled);
* ``report.html``: one self-contained page (images inlined as data URIs) with all of the above and a
  gallery of the most confidently misclassified images, each drawn with the heatmap of the localization
  module, its box and the top 3 (the pictures of ``elope predict --save-vis``).

The numbers are computed from the same predictions as ``evaluate``'s (top-1 equals ``evaluate --json``'s
``top1``). A run folder and an exported file (``--model``: :func:`exported_predictions`) are both a
:class:`elope.evaluation.predictor.Predictor` and give the same report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from torch.utils.data import DataLoader

from elope import writer
from elope.data import build_dataset
from elope.data.transforms import eval_transform
from elope.evaluation.loop import iterate
from elope.evaluation.outputs import Want
from elope.evaluation.predictor import Predictor
from elope.tasks.evaluate import prediction_lines

__all__ = [
    "PREDICTIONS_FILE",
    "classification_metrics",
    "evaluate_exported",
    "exported_predictions",
    "read_predictions",
    "worst_misclassified",
    "write_report",
]

PREDICTIONS_FILE = "predictions.jsonl"


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of ``evaluate --predictions`` (one dict per image)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def confusion_matrix(items: Sequence[dict[str, Any]], classes: Sequence[str]) -> np.ndarray:
    """(C, C) int64 counts, rows the true class, columns the top-1 class."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for item in items:
        matrix[index[item["true"]], item["classes"][0]["index"]] += 1
    return matrix


def per_class_rows(matrix: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (None where undefined: no prediction or no image)."""
    rows = []
    for i, name in enumerate(classes):
        tp, predicted, support = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else (0.0 if precision is not None and recall is not None else None)
        )
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


def worst_pairs(matrix: np.ndarray, classes: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal entries: ``{"true", "predicted", "count", "i", "j"}``."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:k]
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), off.shape[1])
        if off[i, j] > 0:
            pairs.append(
                {"true": classes[i], "predicted": classes[j], "count": int(off[i, j]), "i": i, "j": j}
            )
    return pairs


def classification_metrics(items: Sequence[dict[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """top-1, top-5, mean per-class accuracy (recall), the worst pairs; plus ``matrix`` and ``rows``."""
    if not items:
        raise ValueError("no predictions to report on")
    top1 = sum(it["classes"][0]["class"] == it["true"] for it in items) / len(items)
    top5 = sum(any(c["class"] == it["true"] for c in it["classes"][:5]) for it in items) / len(items)
    matrix = confusion_matrix(items, classes)
    rows = per_class_rows(matrix, classes)
    recalls = [r["recall"] for r in rows if r["recall"] is not None]
    return {
        "top1": top1,
        "top5": top5,
        "mean_per_class": float(np.mean(recalls)),
        "num_images": len(items),
        "worst_pairs": [
            {k: p[k] for k in ("true", "predicted", "count")} for p in worst_pairs(matrix, classes)
        ],
        "matrix": matrix,
        "rows": rows,
    }


def worst_misclassified(items: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` misclassified images whose wrong top-1 was the most confident."""
    wrong = [it for it in items if it["classes"][0]["class"] != it["true"]]
    return sorted(wrong, key=lambda it: -it["classes"][0]["score"])[:count]


def _write_csvs(folder: Path, metrics: dict[str, Any], classes: Sequence[str]) -> None:
    with writer.open_write(folder / "per_class.csv", "w", newline="", encoding="utf-8") as f:
        table = csv.DictWriter(f, fieldnames=["class", "precision", "recall", "f1", "support"])
        table.writeheader()
        for row in metrics["rows"]:
            table.writerow({k: ("" if v is None else v) for k, v in row.items()})
    with writer.open_write(folder / "confusion.csv", "w", newline="", encoding="utf-8") as f:
        lines = csv.writer(f)
        lines.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, metrics["matrix"]):
            lines.writerow([name, *row.tolist()])


def write_report(
    folder: str | Path,
    classes: Sequence[str],
    predictor: Predictor | None,
    *,
    predictions: str | Path | None = None,
    extra: dict[str, Any] | None = None,
    gallery: int = 12,
) -> Path:
    """Write the report of the module doc into ``folder`` from ``predictions`` (default
    ``folder/predictions.jsonl``); ``predictor`` draws the gallery (None: no gallery); ``extra`` (e.g.
    ``evaluate``'s result) is added to ``metrics.json`` under ``evaluate``. Returns ``folder/report.html``.
    """
    from elope.tasks.report_html import confusion_figure, gallery_pictures, render_report

    folder = Path(folder)
    writer.make_folder(folder)
    items = read_predictions(predictions or folder / PREDICTIONS_FILE)
    metrics = classification_metrics(items, classes)
    _write_csvs(folder, metrics, classes)
    pairs = worst_pairs(metrics["matrix"], classes, k=10)
    with writer.write_with(folder / "confusion.png") as tmp:
        confusion_figure(metrics["matrix"], classes, pairs).savefig(tmp, format="png", bbox_inches="tight")
    summary = {k: v for k, v in metrics.items() if k not in ("matrix", "rows")}
    if extra is not None:
        summary["evaluate"] = extra
    writer.write_text(folder / "metrics.json", json.dumps(summary, indent=2, default=str) + "\n")
    pictures = gallery_pictures(predictor, worst_misclassified(items, gallery)) if predictor else []
    page = render_report(summary, metrics["rows"], pairs, folder / "confusion.png", pictures)
    writer.write_text(folder / "report.html", page)
    return folder / "report.html"


def exported_predictions(
    predictor: Predictor, dataset: str, root: str | Path, split: str, lines_out: TextIO, batch_size: int = 16
) -> int:
    """Run an exported model (any :class:`Predictor`) over a split and write ``evaluate --predictions``
    lines to ``lines_out``; returns the number of images. The dataset's classes must be the model's."""
    spec = predictor.spec
    ds = build_dataset(dataset, root, split, transform=eval_transform(spec.crop_source, spec.mean, spec.std))
    if [str(c) for c in ds.classes] != list(predictor.classes):
        raise ValueError(
            f"the classes of {dataset!r} at {root} differ from the model's ({len(ds.classes)} vs "
            f"{len(predictor.classes)}): evaluate on the dataset the model was trained on"
        )
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    done = 0
    for (_, labels, gt_boxes), out in iterate(predictor, loader, Want(top=5)):
        if out is None:  # never from a plain dataset (no image left out)
            continue
        indices = list(range(done, done + len(labels)))
        for line in prediction_lines(out, labels, gt_boxes, indices, ds, spec.crop_source):
            lines_out.write(line + "\n")
        done += len(labels)
    return done


def evaluate_exported(
    model_file: str | Path,
    dataset: str,
    root: str | Path,
    split: str,
    predictions: str | Path,
    *,
    device: str = "cpu",
    batch_size: int = 16,
) -> dict[str, Any]:
    """``evaluate --model FILE``: an exported graph over a split; its top-1, top-5, mean per-class accuracy
    and worst pairs (the predictions written to ``predictions``)."""
    from elope.deploy.runtime import ExportedModel

    model = ExportedModel(model_file, device)
    with writer.open_write(predictions, "w", encoding="utf-8") as lines_out:
        exported_predictions(model, dataset, root, split, lines_out, batch_size)
    metrics = classification_metrics(read_predictions(predictions), model.classes)
    result = {k: v for k, v in metrics.items() if k not in ("matrix", "rows")}
    result.update(split=split, dataset=dataset, root=str(root), model=str(model_file), tau=model.spec.tau)
    return result
