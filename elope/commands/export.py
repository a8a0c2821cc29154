"""``elope export``: the one-pass pipeline of a trained run as one ONNX or TorchScript graph
(:mod:`elope.deploy.export`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from elope.commands.options import (
    checked_output,
    force_option,
    output_rules,
    renamed_option,
    run_option,
    tau_option,
    unfinished_option,
)
from elope.deploy.formats import (
    CALIBRATION_IMAGES,
    FORMATS,
    MAX_CALIBRATION_IMAGES,
    MAX_OPSET,
    OPSET,
    QUANTIZATIONS,
)
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
    quantize: str
    calibration_images: int
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
@click.option(
    "--quantize",
    default="none",
    show_default=True,
    type=click.Choice(QUANTIZATIONS),
    help="int8: the classifying network in int8 for the CPU (onnxruntime static quantization, QDQ, "
    "calibrated on training images; the box step stays float32; ONNX only), checked against float32 on "
    "test images (top-1 agreement, accuracy).",
)
@click.option(
    "--calibration-images",
    default=CALIBRATION_IMAGES,
    show_default=True,
    type=click.IntRange(1, MAX_CALIBRATION_IMAGES),
    help=f"Training images --quantize int8 calibrates on, evenly spread over the split (1-{MAX_CALIBRATION_IMAGES}).",
)
@unfinished_option()
@force_option()
def export_command(**given: Any) -> None:
    """Write the whole one-pass pipeline (Fig. 1) of a trained run as one ONNX or TorchScript graph.

    The graph takes a normalised (B, 3, N, N) batch and returns softmax scores (B, C), boxes (B, 4) in
    input pixels and heatmaps; class names, mean/std, N and τ travel in the file. Then
    `elope predict --model FILE images/` runs it, or onnxruntime / torch.jit.load without this package.

    Example: elope export --run runs/cub --format onnx --out cub.onnx --batch dynamic

    With --quantize int8 the ONNX graph's convolutions and matrix products of the classifying network run
    in int8 (CPU), calibrated on --calibration-images training images.
    """
    o = ExportOptions(**given)
    _check_quantize_options(o.fmt, o.quantize)
    output_rules("elope export", read=read_by_run(o.run_dir), force=o.force)
    checked_output(o.out, "--out")
    int8 = o.calibration_images if o.quantize == "int8" else None
    try:
        with writers_lock([o.out], "elope export"):
            _export(o, int8)
    except (FileNotFoundError, ValueError, TrainingError) as e:
        raise click.ClickException(str(e)) from e


def _check_quantize_options(fmt: str, quantize: str) -> None:
    """Refuse --quantize int8 with TorchScript, and --calibration-images without int8."""
    if quantize == "int8" and fmt != "onnx":
        raise click.UsageError("--quantize int8 writes ONNX (onnxruntime quantization): use --format onnx")
    source = click.get_current_context().get_parameter_source("calibration_images")
    if quantize != "int8" and source is ParameterSource.COMMANDLINE:
        raise click.UsageError("--calibration-images calibrates --quantize int8: add --quantize int8")


def _export(o: ExportOptions, int8: int | None = None) -> None:
    """Load the run with the options' spec, write the graph, compare it with PyTorch (``int8``: quantize it,
    calibrated on that many training images, and compare it with float32: :func:`_export_int8`)."""
    run_dir, fmt, out, batch, crop_source, tau = o.run_dir, o.fmt, o.out, o.batch, o.crop_source, o.tau
    opset, no_check, allow_unfinished, tta, embedding = (
        o.opset,
        o.no_check,
        o.allow_unfinished,
        o.tta,
        o.embedding,
    )
    from elope.deploy.check import ExportCheckError, check_export  # torch: imported here, not for --help
    from elope.deploy.export import export_model
    from elope.runs.loaded import load_run

    run = load_run(run_dir, "cpu", tau=tau, crop_source=crop_source)
    warning = run.check_finished(allow_unfinished)
    if warning:
        click.echo(warning, err=True)
    size = run.spec.crop_source
    options = {"classes": run.classes, "batch": batch, "opset": opset, "extra": {"run": Path(run_dir).name}}
    options.update(tta=tta, embeddings=embedding)
    try:
        if int8 is not None:
            _export_int8(run, out, options, int8, no_check)
            return
        path = export_model(run.model, out, fmt=fmt, **options)
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
    _echo_checks(reports)


def _echo_checks(reports: list[dict[str, Any]], what: str = "") -> None:
    for r in reports:
        click.echo(
            f"check{what}, batch {r['batch']}: top-1 equal {r['top1_equal']}, scores max rel. diff "
            f"{r['scores_max_rel']:.2e}, boxes max diff {r['boxes_max_px']:.3f} px"
        )


def _export_int8(run: Any, out: Path, options: dict[str, Any], calibration: int, no_check: bool) -> None:
    """Export float32 to a temporary file (checked against PyTorch), quantize it to ``out`` calibrated on
    ``calibration`` training images, and check the int8 file against float32 on test images."""
    from elope.deploy.check import ExportCheckError, check_export, check_quantized
    from elope.deploy.export import export_model
    from elope.deploy.quantize import CHECK_IMAGES, quantize_int8, sample_split
    from elope.deploy.runtime import read_metadata

    images, _ = sample_split(run.load_dataset("train")[0], calibration)
    with tempfile.TemporaryDirectory(prefix="elope-export-") as tmp:
        float_path = export_model(run.model, Path(tmp) / "float32.onnx", fmt="onnx", **options)
        try:
            if not no_check:
                _echo_checks(check_export(run.model, float_path), " (float32 against PyTorch)")
            path = quantize_int8(float_path, out, read_metadata(float_path), images, batch=options["batch"])
            size = path.stat().st_size / 2**20
            click.echo(
                f"wrote {path} (onnx, int8, calibrated on {len(images)} training images, {size:.1f} MiB)"
            )
            if no_check:
                return
            test_images, labels = sample_split(run.load_dataset("test")[0], CHECK_IMAGES)
            r = check_quantized(float_path, path, test_images, labels)
        except ExportCheckError as e:
            raise click.ClickException(str(e)) from e
    click.echo(
        f"check (int8 against float32, {r['images']} test images): top-1 agreement {r['agreement']:.3f}, "
        f"accuracy {100 * r['accuracy_float32']:.1f} -> {100 * r['accuracy_int8']:.1f} % "
        f"({r['accuracy_change']:+.1f} points), boxes max diff {r['boxes_max_px']:.3f} px"
    )
