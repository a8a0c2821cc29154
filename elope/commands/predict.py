"""``elope predict``: top classes and the box for image files (:func:`elope.tasks.predict.predict_paths`)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope.commands.options import (
    checked_output,
    compile_option,
    force_option,
    model_file_option,
    output_rules,
    run_option,
    tau_option,
    unfinished_option,
)
from elope.data.errors import DataError
from elope.failures import TrainingError
from elope.runs.lock import writers_lock


def format_prediction(item: dict[str, Any]) -> str:
    """One image of the human-readable listing."""
    if "error" in item:
        return f"{item['path']}: cannot read ({item['error']})"
    box = ", ".join(f"{v:.0f}" for v in item["box"])
    lines = [f"{item['path']}  box [{box}]"]
    lines += [f"  {i + 1}. {c['score']:.3f}  {c['class']}" for i, c in enumerate(item["classes"])]
    return "\n".join(lines)


@dataclass(frozen=True)
class PredictOptions:
    """The options of ``elope predict``, as click passes them."""

    run_dir: Path | None
    model_file: Path | None
    compile_mode: str | None
    images: tuple[Path, ...]
    top: int
    save_vis: Path | None
    as_json: bool
    tau: float | None
    device: str
    allow_unfinished: bool
    force: bool


@click.command("predict", short_help="Top classes and the box for image files.")
@run_option(required=False)
@model_file_option("Instead of --run: a file written by `elope export` (.onnx runs with onnxruntime).")
@compile_option("Run the model through torch.compile (optionally: the mode; reduce-overhead = CUDA graphs).")
@click.argument(
    "images", nargs=-1, required=True, metavar="IMAGE_OR_DIR...", type=click.Path(exists=True, path_type=Path)
)
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 1000), help="Classes per image.")
@click.option(
    "--save-vis",
    default=None,
    type=click.Path(path_type=Path),
    help="Write a PNG per image (heatmap and box) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of the listing.")
@tau_option("Box threshold τ. Default: the run's.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda.")
@unfinished_option()
@force_option()
def predict_command(**given: Any) -> None:
    """Top classes and the box for each IMAGE_OR_DIR (folders are searched recursively).

    Example: elope predict --run runs/cub photos/ --top 3 --save-vis vis/
    """
    o = PredictOptions(**given)
    from elope.tasks.predict import predict_paths  # torch: imported here, not for --help

    if (o.run_dir is None) == (o.model_file is None):
        raise click.UsageError("pass either --run RUN or --model FILE (from `elope export`).")
    if o.model_file is not None and o.compile_mode is not None:
        raise click.UsageError("--compile applies to --run; an exported --model is already one graph.")
    from elope.runs.layout import read_by_run

    # image files are inputs; a folder of images may take the pictures (predict checks their names)
    files = [p for p in o.images if not p.is_dir()]
    output_rules(
        "elope predict",
        inputs=[o.model_file, *files],
        read=read_by_run(o.run_dir, dataset=False),
        force=o.force,
    )
    checked_output(o.save_vis, "--save-vis", kind="dir")
    skipped: list[Any] = []
    notes: list[str] = []
    try:
        with writers_lock([o.save_vis], "elope predict"):
            results = predict_paths(
                o.run_dir,
                o.images,
                top=o.top,
                save_vis=o.save_vis,
                device=o.device,
                tau=o.tau,
                progress=not o.as_json,
                model=o.model_file,
                compile_mode=o.compile_mode,
                allow_unfinished=o.allow_unfinished,
                skipped=skipped,
                notes=notes,
            )
    except (FileNotFoundError, ValueError, ImportError, DataError, TrainingError) as e:
        raise click.ClickException(str(e)) from e
    _report(results, skipped, notes, o.as_json)


def _report(results: list[dict[str, Any]], skipped: list[Any], notes: list[str], as_json: bool) -> None:
    """The predictions on stdout; unreadable and skipped files on stderr; exit 1 when an image (or a file
    that looks like one) could not be read."""
    for note in notes:
        click.echo(note, err=True)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for item in results:
            if "error" not in item:
                click.echo(format_prediction(item))
    errors = [r for r in results if "error" in r]
    for item in errors:
        click.echo(f"error: {format_prediction(item)}", err=True)
    for item in skipped:
        click.echo(f"{'error' if item.problem else 'skipped'}: {item.path}: {item.reason}", err=True)
    if errors:
        click.echo(f"{len(errors)} of {len(results)} image(s) could not be read.", err=True)
    problems = sum(item.problem for item in skipped)
    if problems:
        click.echo(
            f"{problems} file(s) or folder(s) that look like images were not read (listed above).", err=True
        )
    if errors or problems:
        sys.exit(1)
