"""``elope serve --backend ray``: the same application on Ray Serve, with replicas and Ray Serve's batching.

Each replica holds the exported file in its own onnxruntime session (:class:`~elope.serve.model.ServedModel`,
built from the file's bytes, shipped through Ray's object store: a cluster's nodes need not see the file)
and runs the very application of ``elope serve`` (:func:`elope.serve.app.create_app`: ``/predict``,
``/health``, ``/model``, ``/openapi.json``, the page; the same limits, decoding and answers) as its ASGI
ingress. Only the batcher differs: :class:`ServeBatcher` hands each decoded image to a method decorated
with Ray Serve's ``@serve.batch`` (``max_batch`` images, ``max_wait_ms``), which runs the batch on a worker
thread; ``max_queue`` still bounds the images waiting in one replica (503 with Retry-After beyond). Ray
Serve's proxy spreads the requests over ``replicas`` replicas, so a cluster scales the service by adding
replicas. The built-in server (:mod:`elope.serve.server`) stays the default for one machine.

Ray is imported only by the functions here that need it (``pip install "elope[ray]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from elope.serve.app import Limits, create_app
from elope.serve.batching import BatcherClosed, QueueFull
from elope.serve.model import ServedModel

__all__ = ["INSTALL", "ReplicaBase", "ServeBatcher", "build_application", "require_serve", "run_on_ray"]

INSTALL = 'pip install "elope[ray]"'
Outputs = dict[str, np.ndarray]


def require_serve() -> Any:
    """The ``ray.serve`` module, or an ImportError naming the extra to install."""
    try:
        from ray import serve
    except ImportError as e:
        raise ImportError(f"--backend ray needs Ray Serve ({e}): install the extra, `{INSTALL}`") from None
    return serve


class ServeBatcher:
    """:class:`~elope.serve.batching.Batcher`'s interface (``submit``, ``stats``, ``close``) over ``call``,
    an async method of one image decorated with ``@serve.batch`` (Ray Serve gathers the batches)."""

    def __init__(self, call: Any, *, max_queue: int) -> None:
        self.call = call
        self.max_queue = max_queue
        self.queued = 0  # images submitted and not yet answered
        self.closed = False
        self.batches = 0
        self.images = 0
        self.largest = 0

    def submit(self, arrays: list[np.ndarray]) -> list[asyncio.Future]:
        """One task per image (all or none: a full queue raises :class:`QueueFull`)."""
        if self.closed:
            raise BatcherClosed("the server is shutting down")
        if self.queued + len(arrays) > self.max_queue:
            raise QueueFull(self.queued, len(arrays), self.max_queue, 1)
        self.queued += len(arrays)
        return [asyncio.ensure_future(self._one(array)) for array in arrays]

    async def _one(self, array: np.ndarray) -> Outputs:
        try:
            return await self.call(array)
        finally:
            self.queued -= 1

    def counted(self, size: int) -> None:
        """Count one batch of ``size`` images (called by the batched method)."""
        self.batches += 1
        self.images += size
        self.largest = max(self.largest, size)

    def stats(self) -> dict[str, Any]:
        """Counters for ``GET /health`` (this replica's)."""
        mean = self.images / self.batches if self.batches else 0.0
        return {
            "queued": self.queued,
            "batches": self.batches,
            "images": self.images,
            "mean_batch": round(mean, 3),
            "largest_batch": self.largest,
            "backend": "ray",
        }

    def close(self, timeout: float | None = None) -> None:
        """Take no new images (Ray Serve drains the requests in flight)."""
        self.closed = True


class ReplicaBase:
    """One replica (see the module's notes); the deployment class adds the ``@serve.batch`` method
    ``run_batch`` (:func:`build_application`)."""

    def __init__(self, model: bytes, label: str, limits: dict[str, Any], threads: int | None) -> None:
        self.limits = Limits(**limits)
        self.served = ServedModel(
            model,
            threads=threads,
            max_pixels=self.limits.max_pixels,
            max_decode_bytes=self.limits.max_decode_bytes,
            label=label,
        )
        self.batcher = ServeBatcher(self.run_batch, max_queue=self.limits.max_queue)
        self.run_batch.set_max_batch_size(self.limits.max_batch)
        self.run_batch.set_batch_wait_timeout_s(self.limits.max_wait_ms / 1000.0)

    def __serve_build_asgi_app__(self) -> Any:
        """The application of ``elope serve`` with this replica's batcher (Ray Serve's ingress)."""
        return create_app(self.served, self.limits, make_batcher=lambda: self.batcher)

    async def run(self, arrays: list[np.ndarray]) -> list[Outputs]:
        """One batch through the session on a worker thread; each image its row of the outputs."""
        self.batcher.counted(len(arrays))
        outputs = await asyncio.to_thread(self.served.run, np.stack(arrays))
        return [{name: value[i] for name, value in outputs.items()} for i in range(len(arrays))]

    run_batch: Any  # the @serve.batch method of the deployment class


def build_application(
    model: bytes, label: str, limits: Limits, *, replicas: int = 1, threads: int | None = None
) -> Any:
    """The Ray Serve application of the exported ``model`` (its bytes; ``label`` names it in ``/model``):
    ``replicas`` replicas, each on ``threads`` (default 1) of Ray's CPUs; run it with ``serve.run``."""
    serve = require_serve()
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")

    class ElopeReplica(ReplicaBase):
        @serve.batch(max_batch_size=limits.max_batch, batch_wait_timeout_s=limits.max_wait_ms / 1000.0)
        async def run_batch(self, arrays: list[np.ndarray]) -> list[Outputs]:
            return await self.run(arrays)

    deployment = serve.deployment(
        name="elope",
        num_replicas=replicas,
        max_ongoing_requests=limits.max_in_flight,
        ray_actor_options={"num_cpus": threads or 1},
    )(serve.ingress()(ElopeReplica))
    return deployment.bind(model, label, asdict(limits), threads)


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM or Ctrl-C sets, for the block (the handlers before it restored after): set up
    before Ray Serve starts, so that a stop asked while the application is still deploying (``/health`` may
    answer before :func:`ray.serve.run` returns) ends the command as cleanly as one asked later, rather than
    through the handler of ``ray.init`` (``sys.exit(15)``)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_on_ray(application: Any, host: str, port: int, address: str | None = None) -> None:
    """Serve ``application`` (:func:`build_application`) on Ray Serve's proxy at ``host:port`` until
    SIGTERM or Ctrl-C (blocks). ``address`` None: a local Ray started here and stopped after; ``auto`` or
    ``ray://host:port``: that cluster, where the application is deleted again on the way out."""
    import logging

    import ray

    serve = require_serve()
    local = address in (None, "local")
    if not ray.is_initialized():
        # "local": a new Ray (None would join the latest Ray started on this machine, and shut its Serve down)
        ray.init(
            address="local" if local else address, include_dashboard=False, logging_level=logging.WARNING
        )
    try:
        with _stop_signals() as stop:
            serve.start(http_options={"host": host, "port": port})
            serve.run(application, name="elope", route_prefix="/")
            while not stop.wait(0.5):
                pass
    finally:
        if local:
            serve.shutdown()
        else:
            serve.delete("elope")
        ray.shutdown()
