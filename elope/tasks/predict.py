"""``elope predict``: top classes and the box of the localization module for image files, in one pass.

Each image is decoded and resized to the run's crop source (:func:`elope.data.crop_source_size`, twice the
classifier input by default), exactly as ``elope evaluate`` and the crop stages of training read it, and
given to :meth:`elope.nn.model.ELoPE.predict`, which resizes a copy to 64×64 for the localization module,
turns the heatmap into a box (min-max normalisation, threshold τ, Sec. 5), crops the source at the box and
classifies the crop (Fig. 1). Boxes are reported in pixels of the original image. ``--save-vis`` writes the heatmap overlaid and the box drawn,
as in the paper's Figs. 4 and 6.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from elope.data.io import load_image
from elope.data.transforms import eval_transform
from elope.runs.loaded import LoadedRun, load_run
from elope.tasks.evaluate import UNREADABLE_ERRORS, original_box

__all__ = ["IMAGE_EXTENSIONS", "collect_images", "predict_image", "predict_paths"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files named in ``paths``: files as given, directories searched recursively (sorted).

    Inside directories only ``IMAGE_EXTENSIONS`` (any case) are taken; a file named explicitly is always
    taken, so a broken or mislabelled file is reported rather than silently skipped.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} not found: pass image files or folders of images.")
    return found


def _load(path: Path, draft_size: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """RGB image decoded as the datasets decode it for ``draft_size`` (JPEG draft mode), and its stored
    ``(W, H)``; decompression bombs are refused."""
    return load_image(path, draft_size=draft_size)


def _source(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB -> the normalised crop source (3, size, size): the eval transform of the datasets."""
    return eval_transform(size, mean, std)(image).as_subclass(torch.Tensor)


def _title(classes: list[dict[str, Any]], n: int = 3) -> str:
    return "\n".join(f"{i + 1}. {c['class']}  {c['score']:.2f}" for i, c in enumerate(classes[:n]))


def predict_image(
    run: LoadedRun,
    image: Image.Image,
    *,
    top: int = 5,
    tau: float | None = None,
    device: str | torch.device = "cpu",
    size: tuple[int, int] | None = None,
) -> tuple[list[dict[str, Any]], list[float], torch.Tensor | None]:
    """Classify one PIL image: ``(classes, box, heatmap)``; box ``[x1, y1, x2, y2]`` in pixels of an image
    of ``size`` ``(W, H)`` (default: the image's own; pass the stored size of a draft-decoded JPEG)."""
    x = _source(image.convert("RGB"), run.crop_source, *run.normalization).to(device)
    pred = run.model.predict(x[None], top=top, tau=run.tau if tau is None else tau)
    classes = [
        {"class": run.classes[int(i)], "index": int(i), "score": float(s)}
        for i, s in zip(pred.classes[0].tolist(), pred.scores[0].tolist())
    ]
    box = original_box(pred.boxes[0].cpu(), run.crop_source, size or image.size)
    heatmap = None if pred.heatmaps is None else pred.heatmaps[0].float().cpu()
    return classes, box, heatmap


def _vis_name(path: Path, used: set[str]) -> str:
    name, n = path.stem, 1
    while name in used:
        name, n = f"{path.stem}-{n}", n + 1
    used.add(name)
    return name + ".png"


def _load_predictor(
    run_dir: str | Path | None, device: str | torch.device, model: str | Path | None, compile_mode: str | None
) -> Any:
    """The model file of ``elope export`` when ``model`` names one, else the run of ``run_dir`` (compiled
    with ``compile_mode``)."""
    if model is not None:
        from elope.deploy.runtime import load_exported_run

        return load_exported_run(model, device)
    run = load_run(run_dir, device)
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


def predict_paths(
    run_dir: str | Path | None,
    paths: Iterable[str | Path],
    top: int = 5,
    save_vis: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    tau: float | None = None,
    progress: bool = False,
    model: str | Path | None = None,
    compile_mode: str | None = None,
) -> list[dict[str, Any]]:
    """Predict every image in ``paths`` (files or folders) with the model of ``run_dir``.

    ``model`` instead names a file written by ``elope export`` (run with onnxruntime or TorchScript,
    :mod:`elope.deploy.runtime`; ``run_dir`` is then ignored); ``compile_mode`` runs the run's model through
    ``torch.compile`` (:func:`elope.deploy.compiled.compile_model`).

    Returns one dict per image: ``path``, ``classes`` (``[{"class", "index", "score"}]``, best first),
    ``box`` ``[x1, y1, x2, y2]`` in pixels of the original image, ``size`` ``[width, height]`` and, with
    ``save_vis``, ``vis`` (the PNG written). An image that cannot be read gives ``{"path", "error"}`` and
    the others go on.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}.")
    run = _load_predictor(run_dir, device, model, compile_mode)
    files = collect_images(paths)
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {', '.join(map(str, paths))}."
        )
    vis_dir = None if save_vis is None else Path(save_vis)
    used: set[str] = set()
    results: list[dict[str, Any]] = []
    for path in tqdm(files, desc="predict", unit="image", disable=not progress):
        try:
            image, stored = _load(path, run.crop_source)
        except UNREADABLE_ERRORS as e:
            results.append({"path": str(path), "error": f"{type(e).__name__}: {e}"})
            continue
        classes, box, heatmap = predict_image(run, image, top=top, tau=tau, device=device, size=stored)
        item: dict[str, Any] = {"path": str(path), "classes": classes, "box": box, "size": list(stored)}
        if vis_dir is not None:
            item["vis"] = _save_vis(vis_dir / _vis_name(path, used), image, stored, box, heatmap, classes)
        results.append(item)
    return results
