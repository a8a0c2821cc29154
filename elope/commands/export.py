"""``elope export``: the one-pass pipeline of a trained run as one ONNX or TorchScript graph
(:mod:`elope.deploy.export`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope.commands.options import (
    checked_output,
    force_option,
    output_rules,
    renamed_option,
    run_option,
    tau_option,
    unfinished_option,
)
from elope.deploy.formats import FORMATS, MAX_OPSET, OPSET
from elope.failures import TrainingError
from elope.nn.tta_views import TTA_VIEWS
from elope.runs.layout import read_by_run
from elope.runs.lock import writers_lock


class _BatchType(click.ParamType):
    name = "dynamic|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or (isinstance(value, str) and value.lower() == "dynamic"):
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither 'dynamic' nor a positive integer", param, ctx)
        if not 1 <= number <= 4096:
            self.fail(f"batch must lie in 1..4096 (or be 'dynamic'), got {number}", param, ctx)
        return number


@dataclass(frozen=True)
class ExportOptions:
    """The options of ``elope export``, as click passes them."""

    run_dir: Path
    fmt: str
    out: Path
    batch: int | None
    crop_source: int | None
    tau: float | None
    opset: int
    tta: str | None
    no_check: bool
    embedding: bool
    allow_unfinished: bool
    force: bool


@click.command("export", short_help="The one-pass pipeline as one ONNX or TorchScript file.")
@run_option()
@click.option(
    "--format",
    "fmt",
    default="onnx",
    show_default=True,
    type=click.Choice(FORMATS),
    help="onnx (run with onnxruntime) or torchscript (run with torch.jit.load).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="File to write.")
@click.option(
    "--batch",
    default="1",
    show_default=True,
    type=_BatchType(),
    help="Batch size of the graph, 1-4096, or 'dynamic'.",
)
@renamed_option(
    "--crop-source",
    "--image-size",  # the name in elope 0.1.0 (it never was the classifier's side): a hidden alias
    dest="crop_source",
    default=None,
    type=click.IntRange(8, 8192),
    help="Side N of the square input, the crop source the graph cuts its crops from (at most 8192; "
    "dataset.crop_source). Default: the run's (what `elope predict` feeds).",
)
@tau_option("Box threshold τ, fixed in the graph. Default: the run's.")
@click.option(
    "--opset",
    default=OPSET,
    show_default=True,
    type=click.IntRange(OPSET, MAX_OPSET),
    help="ONNX opset (the exporter of the installed PyTorch may stop below the maximum: export says so).",
)
@click.option(
    "--tta",
    default=None,
    type=click.Choice(TTA_VIEWS),
    help="Bake test-time augmentation into the graph: the scores average the softmax over views of the "
    "crop (flip: the crop and its mirror; what `elope evaluate --tta` measures). Default: none.",
)
@click.option("--no-check", is_flag=True, help="Do not compare the exported graph with PyTorch afterwards.")
@click.option(
    "--embedding",
    is_flag=True,
    help="The graph also returns the embedding of the crop (output 'embeddings', ONNX only); "
    "`elope serve` answers with it.",
)
@unfinished_option()
@force_option()
def export_command(**given: Any) -> None:
    """Write the whole one-pass pipeline (Fig. 1) of a trained run as one ONNX or TorchScript graph.

    The graph takes a normalised (B, 3, N, N) batch and returns softmax scores (B, C), boxes (B, 4) in
    input pixels and heatmaps; class names, mean/std, N and τ travel in the file. Then
    `elope predict --model FILE images/` runs it, or onnxruntime / torch.jit.load without this package.

    Example: elope export --run runs/cub --format onnx --out cub.onnx --batch dynamic
    """
    o = ExportOptions(**given)
    run_dir, fmt, out, batch, crop_source, tau, opset, tta, no_check, embedding, allow_unfinished, force = (
        o.run_dir,
        o.fmt,
        o.out,
        o.batch,
        o.crop_source,
        o.tau,
        o.opset,
        o.tta,
        o.no_check,
        o.embedding,
        o.allow_unfinished,
        o.force,
    )
    output_rules("elope export", read=read_by_run(run_dir), force=force)
    checked_output(out, "--out")
    try:
        with writers_lock([out], "elope export"):
            _export(
                run_dir, fmt, out, batch, crop_source, tau, opset, no_check, allow_unfinished, tta, embedding
            )
    except (FileNotFoundError, ValueError, TrainingError) as e:
        raise click.ClickException(str(e)) from e


def _export(
    run_dir: Path,
    fmt: str,
    out: Path,
    batch: int | None,
    crop_source: int | None,
    tau: float | None,
    opset: int,
    no_check: bool,
    allow_unfinished: bool,
    tta: str | None = None,
    embedding: bool = False,
) -> None:
    """Load the run with the options' spec, write the graph, compare it with PyTorch."""
    from elope.deploy.check import ExportCheckError, check_export  # torch: imported here, not for --help
    from elope.deploy.export import export_model
    from elope.runs.loaded import load_run

    run = load_run(run_dir, "cpu", tau=tau, crop_source=crop_source)
    warning = run.check_finished(allow_unfinished)
    if warning:
        click.echo(warning, err=True)
    size = run.spec.crop_source
    try:
        path = export_model(
            run.model,
            out,
            fmt=fmt,
            classes=run.classes,
            batch=batch,
            opset=opset,
            extra={"run": Path(run_dir).name},
            tta=tta,
            embeddings=embedding,
        )
    except ImportError as e:
        raise click.ClickException(f"{e}: install the deploy extra, `pip install 'elope[deploy]'`") from e
    shape = f"({'B' if batch is None else batch}, 3, {size}, {size})"
    views = "" if tta is None else f", scores averaged over the {tta} views"
    click.echo(f"wrote {path} ({fmt}, input {shape}{views}, {path.stat().st_size / 2**20:.1f} MiB)")
    if no_check:
        return
    try:
        reports = check_export(run.model, path)
    except ImportError as e:
        click.echo(f"not checked ({e}); install the deploy extra to check", err=True)
        return
    except ExportCheckError as e:
        raise click.ClickException(str(e)) from e
    for r in reports:
        click.echo(
            f"check, batch {r['batch']}: top-1 equal {r['top1_equal']}, scores max rel. diff "
            f"{r['scores_max_rel']:.2e}, boxes max diff {r['boxes_max_px']:.3f} px"
        )
