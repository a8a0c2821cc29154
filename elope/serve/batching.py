"""Dynamic batching: images of concurrent requests gathered into one onnxruntime call, on a worker thread.

The event loop :meth:`Batcher.submit`\\ s the images of one request (all or none: a bounded queue of
``max_queue`` images answers :class:`QueueFull` instead of waiting) and awaits one future per image. One
worker thread takes up to ``max_batch`` images at a time; when fewer are queued it waits until the oldest
has waited ``max_wait_ms`` for company (images that queued while the previous batch ran go at once), stacks
them, runs the model and hands each future its row of the outputs back through the loop's thread-safe call.
A request that gave up (time-out) cancels its futures; the worker skips cancelled images it has not started.
:meth:`Batcher.close` stops taking new images and finishes the queued ones (the SIGTERM drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Batcher", "BatcherClosed", "QueueFull"]

Outputs = dict[str, np.ndarray]


class QueueFull(RuntimeError):
    """The queue cannot take the images of a request now: answer 503 with ``retry_after`` seconds."""

    def __init__(self, queued: int, wanted: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"server busy: {queued} images queued, {wanted} more would pass the queue limit of {limit} "
            f"(--max-queue); retry in {retry_after} s"
        )
        self.retry_after = retry_after


class BatcherClosed(RuntimeError):
    """The server is shutting down and takes no new images."""


@dataclass
class _Item:
    array: np.ndarray
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


def _deliver(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request gave up meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Batcher:
    """Gathers images into batches for ``run`` (a batch (B, 3, N, N) -> outputs by name, each (B, ...)).

    Args:
        run: the model call, made on the worker thread only.
        max_batch: the most images in one call.
        max_wait_ms: how long the oldest queued image waits for others before a smaller batch runs.
        max_queue: the most images waiting (not yet in a batch); beyond, :meth:`submit` raises QueueFull.
    """

    def __init__(
        self, run: Callable[[np.ndarray], Outputs], *, max_batch: int, max_wait_ms: float, max_queue: int
    ) -> None:
        if max_batch < 1 or max_queue < 1 or not 0 <= max_wait_ms < float("inf"):
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms finite and >= 0")
        self.run_batch = run
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.running = 0  # images in the batch being run
        self.batches = 0
        self.images = 0
        self.largest = 0
        self.last_batch_s = 0.0
        self._thread = threading.Thread(target=self._work, name="elope-serve-batcher", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Images waiting for a batch."""
        return len(self._items)

    def stats(self) -> dict[str, Any]:
        """Counters for ``GET /health``."""
        mean = self.images / self.batches if self.batches else 0.0
        return {
            "queued": self.queued,
            "running": self.running,
            "batches": self.batches,
            "images": self.images,
            "mean_batch": round(mean, 3),
            "largest_batch": self.largest,
        }

    def submit(self, arrays: list[np.ndarray]) -> list[asyncio.Future]:
        """Queue the images of one request (on the event loop); one future per image, all or none queued."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if len(self._items) + len(arrays) > self.max_queue:
                batches_ahead = (len(self._items) + self.max_batch - 1) // self.max_batch + 1
                retry = max(1, int(np.ceil(batches_ahead * max(self.last_batch_s, 0.01))))
                raise QueueFull(len(self._items), len(arrays), self.max_queue, retry)
            futures = [loop.create_future() for _ in arrays]
            self._items.extend(_Item(a, f, loop) for a, f in zip(arrays, futures))
            self._cond.notify()
        return futures

    def _take(self) -> list[_Item]:
        """The next batch (blocks); empty once closed and drained."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            while self._items and len(self._items) < self.max_batch and not self._closed:
                remaining = self._items[0].arrived + self.max_wait - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(self.max_batch, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            self.running = count
        return [item for item in batch if not item.future.cancelled()]

    def _work(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                self.running = 0
                if self._closed and not self._items:
                    return
                continue
            started = time.monotonic()
            try:
                outputs = self.run_batch(np.stack([item.array for item in batch]))
                rows: list[Any] = [{k: v[i] for k, v in outputs.items()} for i in range(len(batch))]
                error = None
            except Exception as e:  # the model failed: every request of the batch gets the error
                rows, error = [None] * len(batch), e
            self.last_batch_s = time.monotonic() - started
            self.batches += 1
            self.images += len(batch)
            self.largest = max(self.largest, len(batch))
            self.running = 0
            for item, row in zip(batch, rows):
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this answer
                    item.loop.call_soon_threadsafe(_deliver, item.future, row, error)

    def close(self, timeout: float | None = None) -> None:
        """Take no new images; finish the queued ones and stop the worker (waits up to ``timeout`` s)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
