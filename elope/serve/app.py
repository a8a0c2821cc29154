"""The HTTP application of ``elope serve`` (Starlette): ``POST /predict``, ``GET /``, ``/health``, ``/model``,
``/openapi.json``.

One request to ``/predict``: the body read under the upload limit (:mod:`.uploads`), split into images,
each decoded on a small thread pool (``decode_threads``, which bounds the memory of decoding too) under the
pixel limit (:mod:`.images`), queued all together for the batcher (:mod:`.batching`; a full queue answers
503 with Retry-After), and the answers built from the outputs (:mod:`.model`). One deadline covers it all
(``timeout_s``: 408 while the body is still arriving, 504 after). Every refusal is a JSON object
``{"error": "<one line>", "status": <code>}``; nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from elope.page_assets import fill_page
from elope.serve.batching import Batcher, BatcherClosed, QueueFull
from elope.serve.images import DEFAULT_MAX_DECODE_BYTES, BadUpload, Decoded, decode_image
from elope.serve.model import HEATMAP_FORMATS, ServedModel
from elope.serve.openapi import openapi_document
from elope.serve.uploads import Upload, read_body, split_uploads

__all__ = ["Limits", "ServeState", "create_app", "error_response"]

LOG = logging.getLogger("uvicorn.error")  # uvicorn's own log: one line per failure, no stack


@dataclass(frozen=True)
class Limits:
    """What one request and the server as a whole may take (the options of ``elope serve``)."""

    max_upload_bytes: int = 10 * 2**20
    max_pixels: int = 40_000_000
    max_images: int = 16
    timeout_s: float = 30.0
    max_queue: int = 64
    max_batch: int = 8
    max_wait_ms: float = 5.0
    decode_threads: int = 2
    max_in_flight: int = (
        128  # requests being read, decoded or run at once: bounds memory (× max_upload_bytes)
    )
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES  # one image's decoding (elope.pixels.decode_bytes)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            low = 0 if name == "max_wait_ms" else 1e-9
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < math.inf:
                raise ValueError(f"Limits.{name} must be a finite number >= {low:g}, got {value!r}")


class ServeState:
    """The model, the limits and, while the app runs (its lifespan), the batcher and the counters."""

    def __init__(
        self, model: ServedModel, limits: Limits, make_batcher: Callable[[], Any] | None = None
    ) -> None:
        self.model = model
        self.limits = limits
        self.make_batcher = make_batcher  # another batcher (Ray Serve's: elope.serve.ray_serve)
        self.batcher: Any = None
        self.decoders: anyio.CapacityLimiter | None = None
        self.preprocess = dataclasses.replace(
            model.preprocess, max_pixels=limits.max_pixels, max_decode_bytes=limits.max_decode_bytes
        )
        self.in_flight = 0
        self.answered = 0
        self.refused = 0
        self.started = time.monotonic()

    def open(self) -> None:
        """Start the batcher's worker thread (or make the batcher given) and the decoding pool."""
        lim = self.limits
        self.decoders = anyio.CapacityLimiter(lim.decode_threads)
        if self.make_batcher is not None:
            self.batcher = self.make_batcher()
            return
        self.batcher = Batcher(
            lambda batch: self.model.run(batch),
            max_batch=lim.max_batch,
            max_wait_ms=lim.max_wait_ms,
            max_queue=lim.max_queue,
        )

    def close(self) -> None:
        """Finish the queued images and stop the worker (after the server stopped taking requests)."""
        if self.batcher is not None:
            self.batcher.close(timeout=self.limits.timeout_s)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body of every refusal: one line naming what was wrong (and the limit)."""
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


MAX_TOP_DIGITS = 9  # top beyond 999,999,999 means "every class" as much as any smaller number does


def shown(text: str, limit: int = 40) -> str:
    """A value the client sent, quoted and cut to ``limit`` characters, for a message about it."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _options(request: Request, num_classes: int) -> dict[str, Any]:
    """``top`` (at least 1, default 5, at most the classes as ``elope predict``), ``heatmap`` (none | png | list) and ``embedding`` from the query string."""
    query = request.query_params
    unknown = sorted(set(query) - {"top", "heatmap", "embedding"})
    if unknown:
        names = ", ".join(shown(name, 20) for name in unknown[:5])
        raise BadUpload(f"unknown query parameter(s) {names}: use top, heatmap, embedding", 400)
    top = query.get("top", "5")
    if not (top.isascii() and top.isdigit()) or len(top) > MAX_TOP_DIGITS or int(top) < 1:
        raise BadUpload(f"top={shown(top)} is not a whole number from 1 to 999999999 (ASCII digits)", 400)
    heatmap = query.get("heatmap", "none").lower()
    if heatmap not in HEATMAP_FORMATS:
        raise BadUpload(f"heatmap={shown(heatmap)} is not one of {', '.join(HEATMAP_FORMATS)}", 400)
    embedding = query.get("embedding", "false").lower()
    if embedding not in ("true", "false", "1", "0"):
        raise BadUpload(f"embedding={shown(embedding)} is not true or false", 400)
    return {"top": min(int(top), num_classes), "heatmap": heatmap, "embedding": embedding in ("true", "1")}


def _decode_all(uploads: list[Upload], state: ServeState) -> list[Decoded]:
    return [decode_image(u.data, state.preprocess, u.name) for u in uploads]


async def _infer(request: Request, state: ServeState, phase: list[str]) -> tuple[list[Upload], list, list]:
    """Read, split, decode and run the images of one request; ``phase[0]`` says how far it got."""
    body = await read_body(request, state.limits.max_upload_bytes)
    phase[0] = "decoding"
    uploads = split_uploads(body, request.headers.get("content-type"), state.limits.max_images)
    del body
    decoded = await anyio.to_thread.run_sync(_decode_all, uploads, state, limiter=state.decoders)
    phase[0] = "inference"
    futures = state.batcher.submit([d.array for d in decoded])
    try:
        rows = await asyncio.gather(*futures)
    finally:
        for future in futures:  # a time-out: the worker skips what it has not started
            future.cancel()
    return uploads, decoded, rows


def _absent(model: ServedModel, options: dict[str, Any]) -> list[str]:
    notes = []
    if options["heatmap"] != "none" and "heatmaps" not in model.outputs:
        notes.append("heatmap absent: the model was exported without a localization module")
    if options["embedding"] and not model.has_embedding:
        notes.append(
            "embedding absent: the exported graph has no 'embeddings' output (elope export writes none)"
        )
    return notes


async def predict(request: Request) -> Response:
    """``POST /predict``: the top classes, the box (and optionally heatmap, embedding) of each image."""
    state: ServeState = request.app.state.serve
    started, phase = time.monotonic(), ["upload"]
    if state.in_flight >= state.limits.max_in_flight:  # before reading a byte of the body
        message = (f"server busy: {state.in_flight} requests in flight, the limit is "
                   f"{state.limits.max_in_flight} (--max-in-flight); retry in 1 s")  # fmt: skip
        return _refuse(state, 503, message, {"Retry-After": "1"})
    state.in_flight += 1
    try:
        options = _options(request, len(state.model.classes))
        with anyio.fail_after(state.limits.timeout_s):
            uploads, decoded, rows = await _infer(request, state, phase)
    except BadUpload as e:
        return _refuse(state, e.status, e.message)
    except QueueFull as e:
        return _refuse(state, 503, str(e), {"Retry-After": str(e.retry_after)})
    except BatcherClosed as e:
        return _refuse(state, 503, f"{e}; retry on another instance", {"Retry-After": "1"})
    except TimeoutError:
        status = 408 if phase[0] == "upload" else 504
        return _refuse(
            state,
            status,
            f"no answer within the request timeout of {state.limits.timeout_s:g} s "
            f"(--timeout), stopped while {phase[0]}",
        )
    except ClientDisconnect:
        return Response(status_code=400)  # nobody reads it: the client went away mid-upload
    except Exception as error:  # the model failed (onnxruntime's own errors): a 500 without its text
        state.refused += 1
        return internal_error(request, error)
    finally:
        state.in_flight -= 1
    model = state.model
    results = [
        {"name": u.name, **model.answer(row, d.size, **options)} for u, d, row in zip(uploads, decoded, rows)
    ]
    state.answered += 1
    body: dict[str, Any] = {"model": model.sha256, "results": results}
    if notes := _absent(model, options):
        body["notes"] = notes
    body["elapsed_ms"] = round((time.monotonic() - started) * 1e3, 2)
    return JSONResponse(body)


def internal_error(request: Request, exc: BaseException) -> Response:
    """A 500 that names no internal detail (no exception text, path or stack); the server's log gets one
    line with the exception's type and first line."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    LOG.error("%s %s failed: %s: %s", request.method, request.url.path[:80], type(exc).__name__, first)
    return error_response(500, "internal error; the server keeps serving (the server's log has the details)")


def _refuse(state: ServeState, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    state.refused += 1
    return error_response(status, message, headers)


async def health(request: Request) -> Response:
    """``GET /health``: ok, and the counters of the queue and the batches."""
    state: ServeState = request.app.state.serve
    stats = state.batcher.stats() if state.batcher else {}
    return JSONResponse(
        {
            "status": "ok",
            "model": state.model.sha256,
            "in_flight": state.in_flight,
            "answered": state.answered,
            "refused": state.refused,
            "uptime_s": round(time.monotonic() - state.started, 1),
            **stats,
        }
    )


async def model_info(request: Request) -> Response:
    """``GET /model``: classes, input size, τ, versions, the file's sha256, the limits."""
    state: ServeState = request.app.state.serve
    return JSONResponse({**state.model.describe(), "limits": asdict(state.limits)})


def page_html() -> str:
    """The page of ``GET /``: ``page.html`` with the look, cards and script it shares with ``elope web``'s
    page filled in (:func:`elope.page_assets.fill_page`), so that it stays one response."""
    template = files("elope.serve").joinpath("page.html").read_text(encoding="utf-8")
    return fill_page(template, "elope/serve/page.html")


def create_app(
    model: ServedModel, limits: Limits | None = None, *, make_batcher: Callable[[], Any] | None = None
) -> Starlette:
    """The Starlette application serving ``model`` under ``limits``; run it with uvicorn (:mod:`.server`).
    ``make_batcher``: builds, at start-up, another batcher with :class:`~.batching.Batcher`'s ``submit``,
    ``stats`` and ``close`` (Ray Serve's batching in :mod:`.ray_serve`)."""
    state = ServeState(model, limits or Limits(), make_batcher)
    page = page_html()
    document = openapi_document(model, state.limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.open()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(state.close)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "")
        headers = getattr(exc, "headers", None)  # 405: Allow
        if headers and "Allow" in headers:  # Starlette joins a set: one order, whatever the hash seed
            headers = {**headers, "Allow": ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))}
        return error_response(status, f"{request.method} {shown(request.url.path, 80)}: {detail}", headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return internal_error(request, exc)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/model", model_info, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
    ]
    handlers = {HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.serve = state
    return app
