"""``elope web``: a static page that runs an exported ONNX graph in the browser with onnxruntime-web
(:mod:`elope.deploy.web`); nothing on this path imports torch."""

from __future__ import annotations

from pathlib import Path

import click

from elope.commands.options import checked_output, force_option, output_rules

__all__ = ["web_command"]


@click.command("web", short_help="A static page that runs an exported model in the browser.")
@click.option(
    "--model",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="ONNX file written by `elope export` (batch 1 or dynamic is best).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write the page into.")
@click.option(
    "--ort",
    default=None,
    envvar="ELOPE_ORT_WEB",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where onnxruntime-web is installed: its dist folder, its package folder, or a folder holding "
    "node_modules (npm install onnxruntime-web@1.31.1). Default: $ELOPE_ORT_WEB, else the current folder.",
)
@force_option()
def web_command(model: Path, out: Path, ort: Path | None, force: bool) -> None:
    """Write a static web page that classifies photos in the browser: the exported graph run by
    onnxruntime-web (WebAssembly), the box and the top-5 drawn on the photo, nothing uploaded.

    The folder holds index.html, the graph (model.onnx), its metadata (model.json) and onnxruntime-web's
    files, copied from an npm install. Serve it with any static file server (browsers load WebAssembly over
    http, not from file://):

    Example: npm install onnxruntime-web@1.31.1 && elope web --model cub.onnx --out site/ &&
    python -m http.server -d site 8000
    """
    from elope.deploy.web import OrtWebMissingError, build_web_page, find_ort_dist
    from elope.exported import MetadataError

    output_rules("elope web", inputs=[model], read=[ort], force=force)
    checked_output(out, "--out", kind="dir")
    try:
        find_ort_dist(ort)  # before the work: the missing install is the likeliest problem
        page = build_web_page(model, out, ort)
    except ImportError as e:
        raise click.ClickException(f"{e}: install the deploy extra, `pip install 'elope[deploy]'`") from e
    except (OrtWebMissingError, MetadataError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    meta = page.metadata
    click.echo(
        f"wrote {out}/index.html and {len(page.files) - 1} more files ({len(meta.classes)} classes, input "
        f"{meta.input_size} px, onnxruntime-web {page.ort_version or 'of unknown version'}); serve it: "
        f"python -m http.server -d {out} 8000"
    )
