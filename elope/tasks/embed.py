"""``elope embed``: the embedding of the paper (Sec. 4) as a product: one vector per image, in a file.

Each image goes through the one-pass pipeline (``docs/architecture.md``, "The pipeline": localize, crop,
backbone, GKMP, embedding layer) exactly as ``evaluate`` and ``predict`` read it; what is kept is the raw
embedding of the crop, the vector the class-mean loss (Eqs. 5-10) is computed on (the pooled features
when the model has no embedding layer).

The file (``.npz``, numpy's zip of arrays, read with ``numpy.load(path, allow_pickle=False)``):

=================  ==========================  ======================================================
key                shape, dtype                what
=================  ==========================  ======================================================
``embeddings``     (N, D) float32              raw embeddings (l2-normalise them for cosine retrieval)
``labels``         (N,) int64                  index into ``classes``; -1 for an image without a label
``paths``          (N,) str                    the image files
``classes``        (C,) str                    the dataset's classes (``labels`` index them)
``means``          (M, D) float32              class means, rows named by ``mean_classes``
``mean_classes``   (M,) str                    the model's classes (``source`` ``model``: the means the
                                               class-mean loss trained), or the labelled classes of the
                                               file (``split``: mean of the normalised embeddings)
``meta``           () str                      JSON: format ``elope-embeddings``, version 1, model,
                                               split, dataset, ``means_source``
=================  ==========================  ======================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from elope import writer
from elope.data import build_dataset
from elope.data.io import load_image
from elope.data.transforms import eval_transform
from elope.evaluation.loop import iterate
from elope.evaluation.outputs import Want
from elope.evaluation.predictor import Predictor
from elope.runs.loaded import LoadedRun, load_run
from elope.spec import ModelSpec
from elope.tasks.predict import find_images

__all__ = [
    "EMBEDDINGS_FORMAT",
    "Embeddings",
    "class_means",
    "embed_dataset",
    "embed_paths",
    "embed_split",
    "retrieval_run",
]

EMBEDDINGS_FORMAT = "elope-embeddings"


@dataclass
class Embeddings:
    """Embeddings of images with their labels, paths and class means (the ``.npz`` of the module doc)."""

    embeddings: np.ndarray  # (N, D) float32, raw
    labels: np.ndarray  # (N,) int64, -1: unlabelled
    paths: list[str]
    classes: list[str]
    means: np.ndarray  # (M, D) float32
    mean_classes: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` (no pickled objects: strings as unicode arrays, ``meta`` as JSON)."""
        path = Path(path)
        meta = {"format": EMBEDDINGS_FORMAT, "version": 1, **self.meta}
        with writer.open_write(path, "wb") as f:  # np.savez would append .npz to a name without it
            np.savez(
                f,
                embeddings=self.embeddings.astype(np.float32),
                labels=self.labels.astype(np.int64),
                paths=np.array(self.paths, dtype=str),
                classes=np.array(self.classes, dtype=str),
                means=self.means.astype(np.float32),
                mean_classes=np.array(self.mean_classes, dtype=str),
                meta=np.array(json.dumps(meta)),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        """Read a file written by :meth:`save` (refused, naming the file, when it is not one)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != EMBEDDINGS_FORMAT:
                    raise ValueError(f"format {meta.get('format')!r}")
                return cls(
                    z["embeddings"],
                    z["labels"],
                    [str(p) for p in z["paths"]],
                    [str(c) for c in z["classes"]],
                    z["means"],
                    [str(c) for c in z["mean_classes"]],
                    meta,
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(
                f"{path} is not an embeddings file written by `elope embed` ({error}); write it again"
            ) from None


def class_means(embeddings: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(C, D) l2-normalised mean of the l2-normalised embeddings of each class (zero rows for absent
    classes): the class means μ_c of the paper's Sec. 4.1 computed in one pass instead of by the running
    update of Eqs. (6)-(7)."""
    x = F.normalize(embeddings.float(), dim=1)
    sums = torch.zeros(num_classes, x.shape[1]).index_add_(0, labels.long(), x)
    return F.normalize(sums, dim=1)


def _embeddings(source: Predictor, batches: Iterable[Sequence[Any]], progress: str | None = None) -> Tensor:
    """(N, D) raw embeddings of the crops of every batch (normalised crop sources first in each), in
    order: the pipeline of Fig. 1 through the one loop (:func:`elope.evaluation.loop.iterate`), a run's
    model or a file of ``elope export --embedding`` alike."""
    parts = []
    for _, out in iterate(source, batches, Want(top=0, embeddings=True), progress=progress):
        if out is not None and out.embeddings is not None:
            parts.append(out.embeddings.float().cpu())
    return torch.cat(parts)


def embed_dataset(run: LoadedRun, ds: Any, batch_size: int = 16, *, progress: bool = False) -> Tensor:
    """(N, D) raw embeddings of every image of ``ds`` (items ``(image, label, box)``), in order."""
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    return _embeddings(run, loader, "embed" if progress else None)


def _means(run: LoadedRun, emb: Tensor, labels: Tensor, classes: list[str]) -> tuple[Tensor, list[str], str]:
    """The model's trained class means when it has them, else the means of the labelled embeddings."""
    if run.means is not None:
        return run.means.float().cpu(), list(run.classes), "model"
    known = labels >= 0
    return class_means(emb[known], labels[known], len(classes)), list(classes), "split"


def embed_split(
    run_dir: str | Path,
    split: str = "test",
    dataset: str | None = None,
    root: str | Path | None = None,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> Embeddings:
    """The embeddings of a split of the run's dataset (or of ``dataset`` at ``root``); ``options`` are
    dataset options that replace the run's (``{"zero_shot": "unseen"}``: the held-out classes)."""
    run = load_run(run_dir, device)
    if options:
        name, where = dataset or run.meta.get("dataset"), root or run.meta.get("root")
        if not name or not where:
            raise ValueError(
                f"{run.model_dir / 'model.json'} does not record the dataset: pass --dataset/--root"
            )
        spec = run.spec
        settings = {**run.split_options(name), **options}
        transform = eval_transform(spec.crop_source, spec.mean, spec.std)
        ds = build_dataset(name, where, split, transform=transform, **settings)
        dataset, root = name, where
    else:
        ds, dataset, root = run.load_dataset(split, dataset, root)
    emb = embed_dataset(run, ds, batch_size, progress=progress)
    labels = torch.tensor(ds.targets, dtype=torch.long)
    means, mean_classes, source = _means(run, emb, labels, list(ds.classes))
    meta = {"model": str(run.model_dir), "split": split, "dataset": dataset, "root": str(root)}
    meta.update(means_source=source, options=options or {})
    return Embeddings(
        emb.numpy(),
        labels.numpy(),
        [p for p, _ in ds.samples],
        list(ds.classes),
        means.numpy(),
        mean_classes,
        meta,
    )


def _exported(model_file: str | Path, device: str | torch.device) -> Predictor:
    from elope.deploy.runtime import ExportedModel

    return ExportedModel(model_file, device)


def _file_batches(files: list[Path], spec: ModelSpec, batch_size: int) -> Iterator[tuple[Tensor]]:
    """Image files as batches of normalised crop sources (an unreadable file is an error naming it)."""
    transform = eval_transform(spec.crop_source, spec.mean, spec.std)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = [transform(load_image(p, draft_size=spec.crop_source)[0]).as_subclass(Tensor) for p in chunk]
        yield (torch.stack(images),)


def embed_paths(
    run_dir: str | Path | None,
    paths: Iterable[str | Path],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    model: str | Path | None = None,
) -> Embeddings:
    """The embeddings of image files (folders searched recursively); labels -1. An unreadable file is an
    error naming it. ``model`` instead names a file of ``elope export --embedding`` (``run_dir`` ignored;
    the file holds no class means: ``means`` is empty, ``means_source`` ``none``)."""
    files, _ = find_images(paths)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, paths))}")
    source: Any = _exported(model, device) if model is not None else load_run(run_dir, device)
    emb = _embeddings(source, _file_batches(files, source.spec, batch_size))
    labels = torch.full((len(files),), -1, dtype=torch.long)
    if model is None:
        means, mean_classes, origin = _means(source, emb, labels, list(source.classes))
        where = str(source.model_dir)
    else:
        means, mean_classes, origin, where = torch.zeros(0, emb.shape[1]), [], "none", str(model)
    meta = {"model": where, "split": None, "means_source": origin}
    return Embeddings(
        emb.numpy(),
        labels.numpy(),
        [str(p) for p in files],
        list(source.classes),
        means.numpy(),
        mean_classes,
        meta,
    )


def retrieval_run(
    run_dir: str | Path,
    split: str = "test",
    dataset: str | None = None,
    root: str | Path | None = None,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """``evaluate --retrieval``: Recall@1/2/4/8 and MAP@R (:func:`elope.evaluation.retrieval.retrieval_metrics`)
    of the run's embedding on ``split``. A run trained on the ``seen`` half of the classes
    (``dataset.options.zero_shot: seen``) is measured on every image of the ``unseen`` half instead: the
    zero-shot protocol (``classes: unseen``, ``split`` then ignored); any other run on the split's own
    classes (``classes: same``)."""
    from elope.evaluation.retrieval import retrieval_metrics

    run = load_run(run_dir, device)
    name = dataset or run.meta.get("dataset") or ""
    zero_shot = run.split_options(name).get("zero_shot") == "seen"
    options = {"zero_shot": "unseen"} if zero_shot else None
    split = "test" if zero_shot else split  # the protocol: every image of the unseen half
    emb = embed_split(run_dir, split, dataset, root, batch_size=batch_size, device=device, options=options)
    metrics = retrieval_metrics(torch.from_numpy(emb.embeddings), torch.from_numpy(emb.labels))
    return {**metrics, "classes": "unseen" if zero_shot else "same", "split": split}
