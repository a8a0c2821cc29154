"""``elope enroll``: new classes without retraining, from a few images each, into a copy of the model.

The class-mean loss (Eqs. 5-10 of the paper) trains an embedding of l2-normalised features in which each
class is its mean μ_c (updated by Eqs. 6-7) and an image belongs to the nearest one. A new class is therefore one more mean: the
l2-normalised mean of the l2-normalised embeddings of its images (:func:`elope.tasks.embed.class_means`),
computed by the one-pass pipeline (localize, crop, embed) as ``predict`` reads images.

The enrolled model answers with the nearest class mean over the old (trained) and the new classes. It is
an ordinary :class:`elope.ELoPE` whose linear classifier holds the means, ``W = s · μ̂`` and no bias, so
``argmax W e = argmax cos(e, μ_c)`` (the norm of ``e`` is the same for every class): ``predict``,
``evaluate``, ``export`` and ``serve`` use it unchanged, and the enrolled classes travel with an exported
graph. The scale ``s = NCM_SCALE / median ‖e‖`` (the median over the enrolment images) makes the scores
about ``softmax(16 · cos)`` (ours: a temperature, chosen once; it changes the scores, never the order).

The result is a new model folder ``OUT/model`` (never the run's own: an existing non-empty ``OUT`` is
refused); its ``model.json`` lists the classes (old, then new), ``classifier: nearest-class-mean``, the
enrolled classes with their images, and the model it came from.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from elope.data.names import class_name_key, class_name_problem
from elope.runs.layout import MODEL_DIR
from elope.runs.loaded import load_run
from elope.runs.model_folder import write_model_folder
from elope.tasks.embed import class_means, embed_paths

__all__ = ["NCM_CLASSIFIER", "NCM_SCALE", "enroll_classes", "ncm_classifier"]

NCM_CLASSIFIER = "nearest-class-mean"
#: the cosine scale of the enrolled model's softmax (ours; the top class does not depend on it)
NCM_SCALE = 16.0


def ncm_classifier(means: torch.Tensor, scale: float) -> nn.Linear:
    """A linear layer whose argmax is the nearest class mean by cosine: ``W = scale · μ̂``, no bias (a zero
    bias, so the layer has the shape ``ELoPE(**config)`` builds)."""
    layer = nn.Linear(means.shape[1], means.shape[0])
    with torch.no_grad():
        layer.weight.copy_(scale * F.normalize(means.float(), dim=1))
        layer.bias.zero_()
    return layer


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"--out {out} exists and is not an empty folder: enroll writes a new model folder; choose a new path"
        )


def _check_names(classes: list[str], images: Mapping[str, Sequence[str | Path]]) -> None:
    """Refuse a new class name that does not print (:func:`elope.data.names.class_name_problem`: empty,
    only spaces, a newline or another control character), one that reads as a name the model (or another
    new class) has (:func:`elope.data.names.class_name_key`), and a class without images."""
    taken = {class_name_key(name): (name, "one of the model's classes") for name in classes}
    for name in images:
        if (problem := class_name_problem(name)) is not None:
            raise ValueError(f"class name {problem}: give the class a name with visible characters only")
        key = class_name_key(name)
        if key in taken:
            other, what = taken[key]
            same = "" if other == name else f" (as {other!r})"
            raise ValueError(f"class {name!r} is already {what}{same}; choose another name")
        if not images[name]:
            raise ValueError(f"class {name!r} has no images: pass at least one image file")
        taken[key] = (name, "the name of another new class")


def enroll_classes(
    run_dir: str | Path,
    out: str | Path,
    images: Mapping[str, Sequence[str | Path]],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> Path:
    """Write ``out/model``: the model of ``run_dir`` with one class mean per entry of ``images`` (class name
    → image files or folders) added. Returns the new model folder.

    Raises FileExistsError for an existing non-empty ``out``, ValueError for a class name the model has,
    a run without class means (trained without the class-mean loss), or a class without images.
    """
    out = Path(out)
    _check_out(out)
    _check_names([], images)  # before the model is read: a name that cannot be printed, or two new ones alike
    run = load_run(run_dir, device)
    if run.means is None:
        raise ValueError(
            f"{run.model_dir} keeps no class means (trained without the class-mean loss, loss.variant none): "
            "enrollment adds class means to those; enroll into a run trained with loss.variant full"
        )
    _check_names(list(run.classes), images)
    new_means, norms, enrolled = [], [], []
    for name, files in images.items():
        emb = embed_paths(run_dir, files, device=device, batch_size=batch_size)
        x = torch.from_numpy(emb.embeddings)
        new_means.append(class_means(x, torch.zeros(len(x), dtype=torch.long), 1)[0])
        norms.append(x.norm(dim=1))
        enrolled.append({"class": name, "images": emb.paths, "count": len(emb.paths)})
    means = torch.cat([F.normalize(run.means.float().cpu(), dim=1), torch.stack(new_means)])
    scale = NCM_SCALE / float(torch.cat(norms).median().clamp(min=1e-6))
    model = copy.deepcopy(run.model).cpu()
    model.classifier = ncm_classifier(means, scale)
    model.num_classes = int(means.shape[0])  # what model.json's config records
    meta: dict[str, Any] = {k: v for k, v in run.meta.items() if k not in ("format", "version", "model")}
    previous = list(meta.get("enrolled") or [])
    meta.update(
        classes=list(run.classes) + list(images),
        classifier=NCM_CLASSIFIER,
        enrolled=previous + enrolled,
        enrolled_from=str(run.model_dir.resolve()),
        ncm_scale=scale,
    )
    folder = out / MODEL_DIR
    write_model_folder(folder, model.eval(), meta, means)
    return folder
