"""``elope predict``: top classes and the box of the localization module for image files, in one pass.

Each image is decoded and resized to the run's crop source (:func:`elope.data.crop_source_size`, twice the
classifier input by default), exactly as ``elope evaluate`` and the crop stages of training read it, and
given to :meth:`elope.nn.model.ELoPE.predict`, which resizes a copy to 64×64 for the localization module,
turns the heatmap into a box (min-max normalisation, threshold τ, Sec. 5), crops the source at the box and
classifies the crop (Fig. 1). Boxes are reported in pixels of the original image. ``--save-vis`` writes the heatmap overlaid and the box drawn,
as in the paper's Figs. 4 and 6.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click
import torch
from PIL import Image
from tqdm import tqdm

from elope.tasks.evaluate import UNREADABLE_ERRORS, LoadedRun, load_run

__all__ = ["IMAGE_EXTENSIONS", "collect_images", "predict_command", "predict_image", "predict_paths"]

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
    from elope.data.io import load_image

    return load_image(path, draft_size=draft_size)


def _source(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB -> the normalised crop source (3, size, size): the eval transform of the datasets."""
    from elope.data.transforms import eval_transform

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
    from elope.tasks.evaluate import original_box

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
    if model is not None:
        from elope.deploy.runtime import load_exported_run

        run: Any = load_exported_run(model, device)
    else:
        run = load_run(run_dir, device)
        if compile_mode is not None:
            from elope.deploy.compiled import compile_model

            run.model = compile_model(run.model, compile_mode)
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
            from elope.tasks.visualize import save_prediction_figure

            sx, sy = image.width / stored[0], image.height / stored[1]  # draft decoding may shrink it
            shown = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
            item["vis"] = str(
                save_prediction_figure(
                    vis_dir / _vis_name(path, used), image, heatmap, shown, title=_title(classes)
                )
            )
        results.append(item)
    return results


def format_prediction(item: dict[str, Any]) -> str:
    """One image of the human-readable listing."""
    if "error" in item:
        return f"{item['path']}: cannot read ({item['error']})"
    box = ", ".join(f"{v:.0f}" for v in item["box"])
    lines = [f"{item['path']}  box [{box}]"]
    lines += [f"  {i + 1}. {c['score']:.3f}  {c['class']}" for i, c in enumerate(item["classes"])]
    return "\n".join(lines)


@click.command("predict")
@click.option(
    "--run", "run_dir", default=None, type=click.Path(path_type=Path), help="Run folder of `elope train`."
)
@click.option(
    "--model",
    "model_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of --run: a file written by `elope export` (.onnx runs with onnxruntime).",
)
@click.option(
    "--compile",
    "compile_mode",
    default=None,
    is_flag=False,
    flag_value="default",
    type=click.Choice(["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]),
    help="Run the model through torch.compile (optionally: the mode; reduce-overhead = CUDA graphs).",
)
@click.argument(
    "images", nargs=-1, required=True, metavar="IMAGE_OR_DIR...", type=click.Path(exists=True, path_type=Path)
)
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1), help="Classes per image.")
@click.option(
    "--save-vis",
    default=None,
    type=click.Path(path_type=Path),
    help="Write a PNG per image (heatmap and box) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of the listing.")
@click.option(
    "--tau",
    default=None,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Box threshold τ. Default: the run's.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda.")
def predict_command(
    run_dir: Path | None,
    model_file: Path | None,
    compile_mode: str | None,
    images: tuple[Path, ...],
    top: int,
    save_vis: Path | None,
    as_json: bool,
    tau: float | None,
    device: str,
) -> None:
    """Top classes and the box for each IMAGE_OR_DIR (folders are searched recursively).

    Example: elope predict --run runs/cub photos/ --top 3 --save-vis vis/
    """
    if (run_dir is None) == (model_file is None):
        raise click.UsageError("pass either --run RUN or --model FILE (from `elope export`).")
    if model_file is not None and compile_mode is not None:
        raise click.UsageError("--compile applies to --run; an exported --model is already one graph.")
    try:
        results = predict_paths(
            run_dir,
            images,
            top=top,
            save_vis=save_vis,
            device=device,
            tau=tau,
            progress=not as_json,
            model=model_file,
            compile_mode=compile_mode,
        )
    except (FileNotFoundError, ValueError, ImportError) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for item in results:
            if "error" not in item:
                click.echo(format_prediction(item))
    errors = [r for r in results if "error" in r]
    for item in errors:
        click.echo(f"error: {format_prediction(item)}", err=True)
    if errors:
        click.echo(f"{len(errors)} of {len(results)} image(s) could not be read.", err=True)
        sys.exit(1)
