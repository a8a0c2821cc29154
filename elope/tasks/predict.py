"""``elope predict``: top classes and the box of the localization module for image files, in one pass.

Each image is decoded and resized to the crop source of the model's spec (``spec.crop_source``), exactly
as ``elope evaluate`` and the crop stages of training read it, and given to the model's ``predict`` (the
one-pass pipeline of Fig. 1, ``docs/architecture.md``): a run folder's :class:`elope.ELoPE` or an
exported file, both a :class:`elope.evaluation.predictor.Predictor`. Boxes are reported in pixels of the
original image. ``--save-vis`` writes the heatmap overlaid and the box drawn, as in the paper's Figs. 4
and 6.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from elope import writer
from elope.data.files import IMAGE_EXTENSIONS, Skipped, walk_images
from elope.data.io import decode_image
from elope.data.shard_store import ShardStore, shown
from elope.data.shards import read_from_set, shard_images, shard_set_root
from elope.data.transforms import eval_transform
from elope.evaluation.predictor import Predictor
from elope.runs.loaded import LoadedRun, load_run
from elope.spec import ModelSpec
from elope.tasks.evaluate import UNREADABLE_ERRORS, original_box

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictSettings",
    "collect_images",
    "decode_source",
    "find_images",
    "load_predictor",
    "predict_batch",
    "predict_image",
    "predict_paths",
]


def find_images(
    paths: Iterable[str | Path], shards: dict[Path, Any] | None = None
) -> tuple[list[Path], list[Skipped]]:
    """Image files named in ``paths`` (files as given, folders searched recursively, sorted, links
    followed) and every file a folder holds that was skipped, with the reason. A shard set's folder, or one
    of its ``.tar`` shards (``elope data shard``), gives the images inside, named ``SHARD/MEMBER``;
    ``shards`` receives where each lies (:func:`elope.data.shards.read_from_set`).

    Inside folders only :data:`elope.data.files.IMAGE_EXTENSIONS` (any case; the set every command reads)
    are taken (:func:`elope.data.files.walk_images`); a file named explicitly is always taken, so a broken
    or mislabelled file is reported rather than silently skipped.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    for p in map(Path, paths):
        in_shards = shard_images(p)
        if in_shards is not None:  # a shard set's folder or one of its .tar files: the images inside
            found += sorted(in_shards)
            if shards is not None:
                shards.update({name: (shard_set_root(p), loc) for name, loc in in_shards.items()})
        elif p.is_dir():
            images, left = walk_images(p, hidden=True)
            found += images
            skipped += left
        elif p.exists() or p.is_symlink():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} not found: pass image files or folders of images.")
    return found, skipped


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """The image files of :func:`find_images` (without the skipped ones)."""
    return find_images(paths)[0]


def _source(image: Image.Image, spec: ModelSpec) -> torch.Tensor:
    """PIL RGB -> the normalised crop source (3, N, N) of a model's spec: the datasets' eval transform."""
    return eval_transform(spec.crop_source, spec.mean, spec.std)(image).as_subclass(torch.Tensor)


def _title(classes: list[dict[str, Any]], n: int = 3) -> str:
    return "\n".join(f"{i + 1}. {c['class']}  {c['score']:.2f}" for i, c in enumerate(classes[:n]))


def predict_image(
    run: Predictor, image: Image.Image, *, top: int = 5, size: tuple[int, int] | None = None
) -> tuple[list[dict[str, Any]], list[float], torch.Tensor | None]:
    """Classify one PIL image: ``(classes, box, heatmap)``; box ``[x1, y1, x2, y2]`` in pixels of an image
    of ``size`` ``(W, H)`` (default: the image's own; pass the stored size of a draft-decoded JPEG)."""
    x = _source(image.convert("RGB"), run.spec).to(run.device)
    pred = run.predict(x[None], top=top)
    classes, box = _answer(run, pred, 0, size or image.size)
    heatmap = None if pred.heatmaps is None else pred.heatmaps[0].float().cpu()
    return classes, box, heatmap


def _answer(
    run: Predictor, pred: Any, row: int, size: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[float]]:
    """The classes and the box (in pixels of an image of ``size``) of row ``row`` of a prediction."""
    classes = [
        {"class": run.classes[int(i)], "index": int(i), "score": float(s)}
        for i, s in zip(pred.classes[row].tolist(), pred.scores[row].tolist())
    ]
    return classes, original_box(pred.boxes[row].cpu(), run.spec.crop_source, size)


def decode_source(
    path: str | Path, spec: ModelSpec, read: Callable[[], bytes] | None = None
) -> tuple[torch.Tensor, tuple[int, int]] | str:
    """One image file as ``elope predict`` reads it for a model of ``spec``: the normalised crop source
    (3, N, N) and the stored ``(W, H)``, or the error text of a file that cannot be read. ``read`` gives
    the image's bytes instead of the file ``path`` (an image in a shard, :func:`elope.data.shards.read_from_set`)."""
    try:
        data = None if read is None else read()
        decoded = decode_image(path, draft_size=spec.crop_source, data=data)  # as the datasets decode
    except UNREADABLE_ERRORS as e:
        return f"{type(e).__name__}: {e}"
    return _source(decoded.image.convert("RGB"), spec), decoded.size


def predict_batch(
    run: Predictor, paths: list[str], sources: torch.Tensor, sizes: list[tuple[int, int]], top: int
) -> list[dict[str, Any]]:
    """The items of :func:`predict_paths` (``path``, ``classes``, ``box``, ``size``) for decoded images
    (:func:`decode_source`) run as one batch (B, 3, N, N): the answers of one image at a time."""
    pred = run.predict(sources.to(run.device), top=top)
    items = []
    for row, (path, size) in enumerate(zip(paths, sizes)):
        classes, box = _answer(run, pred, row, size)
        items.append({"path": str(path), "classes": classes, "box": box, "size": list(size)})
    return items


def _vis_targets(files: list[Path], folder: Path) -> list[Path]:
    """``folder/<stem>.png`` per image (``<stem>-1.png``, ... when stems repeat); one that would overwrite
    an input image (``--save-vis`` naming the images' own folder) is refused before any work."""
    used: set[str] = set()
    targets = []
    for path in files:
        name, n = path.stem, 1
        while name in used:
            name, n = f"{path.stem}-{n}", n + 1
        used.add(name)
        targets.append(folder / f"{name}.png")
    inputs = {os.path.realpath(p) for p in files}
    clash = next((t for t in targets if os.path.realpath(t) in inputs), None)
    blocked = next((t for t in targets if os.path.lexists(t) and not os.path.isfile(t)), None)
    if blocked is not None:  # a folder (or a FIFO) where a picture goes: refused before any work
        raise ValueError(
            f"--save-vis {folder}: {blocked} exists and is not a regular file; choose another folder"
        )
    if clash is not None:
        raise ValueError(
            f"--save-vis {folder}: the picture {clash} would overwrite that input image; choose another folder"
        )
    for target in targets:  # a link, or a file of the user's: refused before any work (elope.writer)
        writer.refusal(target, "--save-vis")
    return targets


def load_predictor(
    run_dir: str | Path | None,
    device: str | torch.device,
    model: str | Path | None,
    compile_mode: str | None,
    tau: float | None,
) -> Predictor:
    """The model file of ``elope export`` when ``model`` names one (its τ is fixed: ``tau`` may only repeat
    it), else the run of ``run_dir`` loaded with ``tau`` (compiled with ``compile_mode``)."""
    if model is not None:
        from elope.deploy.runtime import ExportedModel

        exported = ExportedModel(model, device)
        if tau is not None and abs(float(tau) - exported.spec.tau) > 1e-9:
            raise ValueError(
                f"τ is fixed in the exported graph ({exported.spec.tau}); re-export with "
                f"`elope export --tau {tau}`."
            )
        return exported
    run = load_run(run_dir, device, tau=tau)
    if compile_mode is not None:
        from elope.deploy.compiled import compile_model

        run.model = compile_model(run.model, compile_mode)
    return run


def _save_vis(
    target: Path,
    image: Image.Image,
    stored: tuple[int, int],
    box: list[float],
    heatmap: torch.Tensor | None,
    classes: list[dict[str, Any]],
) -> str:
    """Draw the heatmap and box over ``image`` (decoded, maybe smaller than ``stored``) to ``target``."""
    from elope.tasks.visualize import save_prediction_figure

    sx, sy = image.width / stored[0], image.height / stored[1]  # draft decoding may shrink it
    shown = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
    return str(save_prediction_figure(target, image, heatmap, shown, title=_title(classes)))


@dataclass(frozen=True)
class PredictSettings:
    """What :func:`predict_paths` takes besides the images (its keyword arguments; a name not here is
    refused)."""

    tau: float | None = None  # replaces the run's τ (an exported file's may only be repeated)
    progress: bool = False
    model: str | Path | None = None  # a file of `elope export` instead of the run
    compile_mode: str | None = None  # torch.compile (elope.deploy.compiled.compile_model)
    allow_unfinished: bool = False
    skipped: list[Skipped] | None = None  # receives the files of the folders that were not read
    notes: list[str] | None = None  # receives the warning of an unfinished run


def _decode(
    path: Path, draft_size: int, shards: dict[Path, Any], stores: dict[str, ShardStore]
) -> tuple[Image.Image, tuple[int, int]]:
    """``path`` decoded as the datasets decode it (draft mode to the crop source), from its shard when it
    lies in one: the image and its full size as shown."""
    data = read_from_set(shards[path], stores) if path in shards else None
    decoded = decode_image(path, draft_size=draft_size, data=data)
    return decoded.image, decoded.size


def predict_paths(
    run_dir: str | Path | None,
    paths: Iterable[str | Path],
    top: int = 5,
    save_vis: str | Path | None = None,
    device: str | torch.device = "cpu",
    **settings: Any,
) -> list[dict[str, Any]]:
    """Predict every image in ``paths`` (files or folders) with the model of ``run_dir``; ``settings``:
    :class:`PredictSettings`.

    ``model`` instead names a file written by ``elope export`` (run with onnxruntime or TorchScript,
    :mod:`elope.deploy.runtime`; ``run_dir`` is then ignored); ``compile_mode`` runs the run's model through
    ``torch.compile`` (:func:`elope.deploy.compiled.compile_model`).

    Returns one dict per image: ``path``, ``classes`` (``[{"class", "index", "score"}]``, best first),
    ``box`` ``[x1, y1, x2, y2]`` in pixels of the original image, ``size`` ``[width, height]`` and, with
    ``save_vis``, ``vis`` (the PNG written). A shard set's folder or ``.tar`` shard in ``paths`` gives its images. An image that cannot be read gives ``{"path", "error"}`` and
    the others go on. ``skipped`` (a list) receives every file of the folders that was not read, with the
    reason (:class:`elope.data.files.Skipped`). An unfinished run is refused unless ``allow_unfinished``
    (then ``notes`` receives the warning).
    """
    o = PredictSettings(**settings)
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}.")
    shards: dict[Path, Any] = {}
    stores: dict[str, ShardStore] = {}  # one per shard set: its open files
    files, left = find_images(paths, shards)
    if o.skipped is not None:
        o.skipped.extend(left)
    if not files:
        raise FileNotFoundError(
            f"no images (.jpg, .png, .tif, .gif, .webp, .bmp, ... {len(IMAGE_EXTENSIONS)} extensions) found in "
            f"{', '.join(map(str, paths))}."
        )
    targets = _vis_targets(files, Path(save_vis)) if save_vis is not None else None
    run = load_predictor(run_dir, device, o.model, o.compile_mode, o.tau)
    if isinstance(run, LoadedRun):  # a run folder (an exported file is finished by definition)
        (o.notes if o.notes is not None else []).extend(
            filter(None, [run.check_finished(o.allow_unfinished)])
        )
    results: list[dict[str, Any]] = []
    for index, path in enumerate(tqdm(files, desc="predict", unit="image", disable=not o.progress)):
        try:
            image, stored = _decode(path, run.spec.crop_source, shards, stores)
        except UNREADABLE_ERRORS as e:
            results.append({"path": shown(path), "error": f"{type(e).__name__}: {e}"})
            continue
        classes, box, heatmap = predict_image(run, image, top=top, size=stored)
        item: dict[str, Any] = {"path": shown(path), "classes": classes, "box": box, "size": list(stored)}
        if targets is not None:
            item["vis"] = _save_vis(targets[index], image, stored, box, heatmap, classes)
        results.append(item)
    return results
