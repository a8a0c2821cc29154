"""``elope serve``: an HTTP API and a web page over an exported model (:mod:`elope.serve`).

``--model FILE`` serves an ONNX file of ``elope export`` with onnxruntime; nothing on that path imports
torch. ``--run RUN`` exports the run's one-pass pipeline to ONNX first (dynamic batch, the run's crop source
and τ, in a temporary folder deleted before serving starts: the graph is served from memory), then serves
it the same way; that path needs torch and the deploy extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope.commands.options import FiniteFloatRange

__all__ = ["serve_command"]

MAX_THREADS = 64  # onnxruntime's intra-op pool: more gains nothing and takes long to start (~0.15 s each)


def _export_run(run_dir: Path) -> bytes:
    """The run's pipeline as ONNX bytes (:func:`elope.deploy.export.export_model`, dynamic batch)."""
    import tempfile

    from elope.deploy.export import export_model
    from elope.runs.loaded import load_run

    run = load_run(run_dir, "cpu")
    with tempfile.TemporaryDirectory(prefix="elope-serve-") as tmp:
        path = export_model(
            run.model,
            Path(tmp) / "model.onnx",
            classes=run.classes,
            batch=None,
            extra={"run": Path(run_dir).name},
        )
        return path.read_bytes()


def _interruptible(build: Callable[[], Any]) -> Any:
    """``build()`` with SIGTERM left to the system (the process ends at once): onnxruntime builds its
    session and thread pool in C++ for seconds without returning to Python, where the command's own SIGTERM
    handler would wait; nothing is written before serving starts, so there is nothing to clean up."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return build()
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        return build()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load(
    model: Path | None,
    run_dir: Path | None,
    threads: int | None,
    max_pixels: int,
    max_decode_bytes: int = 512 * 2**20,
    exported: bytes | None = None,
) -> Any:
    from elope.serve.model import ServedModel

    if (model is None) == (run_dir is None):
        raise click.UsageError("give one of --model FILE.onnx or --run RUN")
    limits = {"threads": threads, "max_pixels": max_pixels, "max_decode_bytes": max_decode_bytes}
    try:
        if model is not None:
            return _interruptible(lambda: ServedModel(model, **limits))
        data = exported if exported is not None else _export_run(run_dir)
        name = Path(run_dir).resolve().name  # /model names the run, never where it lies
        return _interruptible(lambda: ServedModel(data, label=f"{name} (exported)", **limits))
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e


@dataclass(frozen=True)
class ServeOptions:
    """The options of ``elope serve`` as click parses them (one field per option, named by its ``dest``)."""

    model: Path | None
    run_dir: Path | None
    host: str
    port: int
    threads: int | None
    max_batch: int
    max_wait_ms: float
    max_queue: int
    max_images: int
    max_upload_mb: float
    max_pixels: int
    max_decode_mb: int
    timeout: float
    decode_threads: int
    max_in_flight: int
    header_timeout: float
    keep_alive_timeout: float
    max_connections: int
    access_log: bool
    backend: str
    replicas: int
    ray_address: str | None


@click.command("serve", short_help="An HTTP API and a web page over an exported file.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="ONNX file of `elope export`.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), help="Run folder: exported to ONNX first.")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (behind a proxy: keep it)."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option(
    "--threads",
    type=click.IntRange(1, MAX_THREADS),
    help="onnxruntime intra-op threads (default: its own).",
)
@click.option(
    "--max-batch",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Images per call.",
)
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=FiniteFloatRange(0, 10_000),
    help="How long the oldest queued image waits for others.",
)
@click.option(
    "--max-queue",
    default=64,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Images waiting; beyond, 503 with Retry-After.",
)
@click.option(
    "--max-images",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Per request.",
)
@click.option(
    "--max-upload-mb",
    default=10.0,
    show_default=True,
    type=FiniteFloatRange(0.001, 1024),
    help="Request body limit in MiB.",
)
@click.option(
    "--max-pixels",
    default=40_000_000,
    show_default=True,
    type=click.IntRange(1, 100_000_000),
    help="Pixels per image, read from the header before decoding (decompression bombs).",
)
@click.option(
    "--max-decode-mb",
    default=512,
    show_default=True,
    type=click.IntRange(16, 65_536),
    help="Memory one image may take to decode, known from its header (elope.pixels.decode_bytes); "
    "beyond, 413 before decoding.",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=FiniteFloatRange(0.01, 3600),
    help="Seconds for one request, upload to answer (408 / 504 after).",
)
@click.option(
    "--decode-threads",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Images decoded at once (memory: this x --max-decode-mb).",
)
@click.option(
    "--max-in-flight",
    default=128,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Requests read, decoded or run at once (memory: this x 2 x the upload limit); beyond, 503.",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=FiniteFloatRange(0.1, 600),
    help="Seconds for a request's head (request line and headers) to arrive; then the connection is "
    "closed (slow clients).",
)
@click.option(
    "--keep-alive-timeout",
    default=5.0,
    show_default=True,
    type=FiniteFloatRange(0.1, 600),
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--max-connections",
    default=1024,
    show_default=True,
    type=click.IntRange(1, 65_536),
    help="Open connections at most (fewer if the open-file limit allows fewer); past it a new one "
    "replaces the oldest still waiting for its head.",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log one line per request (uvicorn's).",
)
@click.option(
    "--backend",
    type=click.Choice(["builtin", "ray"]),
    default="builtin",
    show_default=True,
    help="builtin: this process (uvicorn), the default for one machine; ray: Ray Serve, with --replicas and "
    "Ray Serve's batching (--max-batch, --max-wait-ms), so a cluster scales it "
    "(`pip install \"elope[ray]\"`; the connection options above are then Ray's proxy's).",
)
@click.option(
    "--replicas",
    default=1,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="With --backend ray: replicas, each with its own onnxruntime session.",
)
@click.option(
    "--ray-address",
    default=None,
    help="With --backend ray: a cluster (auto, ray://HOST:PORT); default: a local Ray started here.",
)
def serve_command(**given: Any) -> None:
    """Serve an exported model: POST /predict, the page at /, /health, /model, /openapi.json.

    Binds 127.0.0.1 by default; put a reverse proxy in front to reach it from elsewhere (docs/usage.md,
    "Serving"). SIGTERM lets the requests in flight finish, then exits with 0. Nothing is written to disk.

    Example: elope serve --model cub.onnx --port 8000, then open http://127.0.0.1:8000/
    """
    o = ServeOptions(**given)
    try:
        from elope.serve.app import Limits, create_app
        from elope.serve.server import run_server
    except ImportError as e:
        raise click.ClickException(f"{e}: install the serve extra, `pip install 'elope[serve]'`") from e
    if o.backend != "ray" and (o.replicas != 1 or o.ray_address is not None):
        raise click.UsageError("--replicas and --ray-address need --backend ray")
    exported = _export_run(o.run_dir) if o.backend == "ray" and o.run_dir and not o.model else None
    served = _load(o.model, o.run_dir, o.threads, o.max_pixels, o.max_decode_mb * 2**20, exported)
    data = (exported or _model_bytes(o.model, served.sha256)) if o.backend == "ray" else None
    limits = Limits(
        max_upload_bytes=int(o.max_upload_mb * 2**20),
        max_pixels=o.max_pixels,
        max_images=o.max_images,
        timeout_s=o.timeout,
        max_queue=o.max_queue,
        max_batch=o.max_batch,
        max_wait_ms=o.max_wait_ms,
        decode_threads=o.decode_threads,
        max_in_flight=o.max_in_flight,
        max_decode_bytes=o.max_decode_mb * 2**20,
    )
    click.echo(
        f"serving {served.label} ({len(served.classes)} classes, input {served.input_size} px, sha256 "
        f"{served.sha256[:12]}) on http://{o.host}:{o.port}/",
        err=True,
    )
    if o.backend == "ray":
        _serve_on_ray(data, served.label, limits, o)
        return
    run_server(
        create_app(served, limits),
        o.host,
        o.port,
        grace_s=o.timeout,
        header_timeout_s=o.header_timeout,
        keep_alive_s=o.keep_alive_timeout,
        max_connections=o.max_connections,
        access_log=o.access_log,
    )


def _model_bytes(model: Path, sha256: str) -> bytes:
    """``--model``'s bytes for Ray Serve's replicas, read again: checked to be the file just loaded."""
    import hashlib

    data = model.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise click.ClickException(f"{model} changed while it was loaded: start again")
    return data


def _serve_on_ray(data: bytes, label: str, limits: Any, o: ServeOptions) -> None:
    """``--backend ray``: the model's bytes to Ray Serve's replicas (:mod:`elope.serve.ray_serve`)."""
    try:
        from elope.serve.ray_serve import build_application, run_on_ray

        application = build_application(data, label, limits, replicas=o.replicas, threads=o.threads)
    except ImportError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"on Ray Serve: {o.replicas} replica(s)", err=True)
    run_on_ray(application, o.host, o.port, o.ray_address)
