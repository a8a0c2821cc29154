"""``elope predict``: top classes and the box for image files (:func:`elope.tasks.predict.predict_paths`)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
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
from elope.commands.predict_folder import (
    FolderOptions,
    ImageSource,
    folder_options,
    is_ray_address,
    predict_folder,
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
    out: Path | None
    ray_address: str | None
    actors: int
    batch_size: int
    part_size: int


def _with_folder_options(command: Any) -> Any:
    for option in reversed(folder_options()):
        command = option(command)
    return command


@click.command("predict", short_help="Top classes and the box for image files.")
@run_option(required=False)
@model_file_option("Instead of --run: a file written by `elope export` (.onnx runs with onnxruntime).")
@compile_option("Run the model through torch.compile (optionally: the mode; reduce-overhead = CUDA graphs).")
@click.argument(
    "images",
    nargs=-1,
    required=False,
    metavar="IMAGE_OR_DIR...",
    type=ImageSource(exists=True, path_type=Path),
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
@_with_folder_options
def predict_command(**given: Any) -> None:
    """Top classes and the box for each IMAGE_OR_DIR (folders are searched recursively).

    Example: elope predict --run runs/cub photos/ --top 3 --save-vis vis/

    Many images: elope predict --model cub.onnx photos/ --out results/ [--ray [ADDRESS]] writes one JSON
    line per image in part files (a list.txt of paths is a SOURCE too); a second run skips the parts written.
    """
    o = _ray_source(PredictOptions(**given))
    from elope.tasks.predict import predict_paths  # torch: imported here, not for --help

    if (o.run_dir is None) == (o.model_file is None):
        raise click.UsageError("pass either --run RUN or --model FILE (from `elope export`).")
    if not o.images:
        raise click.UsageError("Missing argument 'IMAGE_OR_DIR...'.")
    if o.out is not None or o.ray_address is not None:
        _predict_to_folder(o)
        return
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


def _ray_source(o: PredictOptions) -> PredictOptions:
    """``--ray photos/``: click gave the optional value the first SOURCE; it goes back to the images."""
    if o.ray_address is None or is_ray_address(o.ray_address):
        return o
    return replace(o, images=(Path(o.ray_address), *o.images), ray_address="local")


def _predict_to_folder(o: PredictOptions) -> None:
    """``--out FOLDER`` (with or without ``--ray``): :func:`elope.commands.predict_folder.predict_folder`."""
    if o.out is None or o.model_file is None:
        raise click.UsageError("--ray and --out need --model FILE (from `elope export`) and --out FOLDER.")
    if o.save_vis is not None or o.as_json or o.compile_mode is not None:
        raise click.UsageError("--out writes JSON lines: --save-vis, --json and --compile do not apply.")
    if o.ray_address is not None and o.device != "cpu":
        raise click.UsageError("--ray runs onnxruntime on the actors' CPUs: leave --device at cpu.")
    folders = [p for p in o.images if p.is_dir()]
    output_rules("elope predict", inputs=[o.model_file], read=folders, own=[o.out], force=o.force)
    checked_output(o.out, "--out", kind="dir")
    options = FolderOptions(
        model_file=o.model_file,
        sources=o.images,
        out=o.out,
        ray_address=o.ray_address,
        top=o.top,
        tau=o.tau,
        device=o.device,
        actors=o.actors,
        batch_size=o.batch_size,
        part_size=o.part_size,
    )
    try:
        predict_folder(options)
    except (FileNotFoundError, ValueError, ImportError, DataError, OSError) as e:
        raise click.ClickException(str(e)) from e


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
