"""Running the application with uvicorn: bound to 127.0.0.1 by default, slow and idle clients cut, SIGTERM
drains and exits 0.

**Slow clients.** uvicorn has no deadline for a request's head: a connection that sends a request line and
nothing more is held for ever, and a thousand of them take every socket the process may open. Each
connection here runs :class:`GuardedProtocol` (uvicorn's httptools protocol with two additions):

* the head of every request (the request line and the headers) must arrive within ``header_timeout_s`` of
  the connection's start or of the previous answer; when it does not, the connection is closed (with a 408
  when part of a head came). Idle keep-alive connections are closed after ``keep_alive_s`` (uvicorn's own
  timer). The body is then bounded by the application's request timeout (408, :mod:`.app`);
* at most ``max_connections`` are open at once (fewer when the process may not open that many files: its
  soft limit is raised to the hard one at start; 64 are kept for the model, the log and the threads, and
  two bursts of ``accept`` for the sockets taken before the cap closes them; where the hard limit is as low
  as 1,024 a flood may still exhaust the file table for a moment: the accepting pauses 1 s and the log gets
  one line, not a traceback per socket).
  A connection past the cap takes the place of the oldest one still waiting for its head, so a flood of
  slow clients cannot keep ``GET /health`` out; with none waiting, the new one is closed.

Cut connections are counted and logged in one line at most every 10 s, never one line (or a traceback)
each; errors of the event loop itself (such as an exhausted file table) likewise, by kind.

**SIGTERM** (or Ctrl-C): uvicorn stops accepting connections, lets the requests in flight finish (up to
``grace_s`` seconds), then runs the application's shutdown, which finishes the batcher's queue. uvicorn then
raises the signal again for the default handler, which would end the process with status 143; a no-op
handler installed around the run makes a drained SIGTERM exit with 0 instead (Ctrl-C keeps its 130).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import time
from types import FrameType
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "GuardedProtocol",
    "connection_cap",
    "guarded_protocol",
    "guarded_server",
    "quiet_loop_errors",
    "run_server",
    "server_config",
]

LOG = logging.getLogger("uvicorn.error")
BACKLOG = 128  # connections accepted in one go (asyncio accepts up to this many before their protocols run)
FILES_RESERVED = 64 + 2 * BACKLOG  # the model, log, threads; sockets accepted before the cap closes them
LOG_EVERY_S = 10.0


def connection_cap(wanted: int) -> int:
    """``wanted`` connections, or fewer when the process may not open that many files (its soft limit is
    raised to the hard one first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + FILES_RESERVED)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a limit the kernel refuses: keep the soft one
            pass
    return max(1, min(wanted, soft - FILES_RESERVED))


class _Tally:
    """Counts of cut connections by reason, logged in one line at most every ``LOG_EVERY_S`` seconds."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.logged = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.total[reason] = self.total.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.logged >= LOG_EVERY_S:
            parts = ", ".join(f"{n} {why}" for why, n in sorted(self.counts.items()))
            LOG.warning("connections cut since the last note: %s", parts)
            self.counts, self.logged = {}, now


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's head and a cap on connections
    (see the module's notes); :func:`guarded_protocol` sets the limits."""

    header_timeout_s = 10.0
    max_connections = 1024
    tally = _Tally()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._waiting_since = 0.0
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_one():
            self.tally.add("over the connection cap")
            self.transport.abort()
            return
        self._arm()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request head; False when none waits."""
        waiting = [c for c in self.connections if c is not self and getattr(c, "_head_timer", None)]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._waiting_since)
        oldest._cut("waiting for a head at the connection cap", respond=False)
        return True

    def _arm(self) -> None:
        self._disarm()
        self._head_bytes = 0
        self._waiting_since = time.monotonic()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            self._cut(f"with no complete request head within {self.header_timeout_s:g} s", respond=True)
        else:
            self._cut(f"idle for {self.header_timeout_s:g} s", respond=False)

    def _cut(self, reason: str, respond: bool) -> None:
        self._disarm()
        self.tally.add(reason)
        if self.transport.is_closing():
            return
        if respond:
            error = f"the request head did not arrive within {self.header_timeout_s:g} s (--header-timeout)"
            body = json.dumps({"error": error, "status": 408}).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()
        else:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_bytes += len(data)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a pipelined request already has its head
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedProtocol]:
    """:class:`GuardedProtocol` with these limits (a subclass: each server its own)."""
    attrs = {"header_timeout_s": header_timeout_s, "max_connections": max_connections, "tally": _Tally()}
    return type("GuardedHttpProtocol", (GuardedProtocol,), attrs)


class _LoopErrors:
    """The event loop's exception handler: one line per kind of error at most every ``LOG_EVERY_S``
    seconds, with how many were not logged, and no traceback (asyncio logs one per failed ``accept``)."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.skipped: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        kind = f"{context.get('message', 'event loop error')}" + (
            f" ({type(error).__name__}: {error})" if error else ""
        )
        now = time.monotonic()
        if now - self.last.get(kind, -LOG_EVERY_S) < LOG_EVERY_S:
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
            return
        more = self.skipped.pop(kind, 0)
        self.last[kind] = now
        LOG.error("%s%s", kind, f" (and {more} more like it)" if more else "")


def quiet_loop_errors() -> None:
    """Install :class:`_LoopErrors` on the running event loop (from the application's start-up)."""
    asyncio.get_running_loop().set_exception_handler(_LoopErrors())


def _drained(signum: int, frame: FrameType | None) -> None:
    """SIGTERM raised again by uvicorn once the server drained: nothing more to do, exit normally."""


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    grace_s: float,
    header_timeout_s: float = 10.0,
    keep_alive_s: float = 5.0,
    max_connections: int = 1024,
    access_log: bool = False,
    log_level: str = "info",
) -> Any:
    """The ``uvicorn.Config`` of ``elope serve``: the guarded protocol, the keep-alive and drain times."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(header_timeout_s, connection_cap(max_connections)),
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        backlog=BACKLOG,
        timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=int(grace_s) + 1,
    )


def guarded_server(config: Any) -> Any:
    """A ``uvicorn.Server`` for ``config`` whose event loop logs its own errors by :class:`_LoopErrors`."""
    import uvicorn

    class GuardedServer(uvicorn.Server):
        async def serve(self, sockets: Any = None) -> None:
            quiet_loop_errors()
            await super().serve(sockets)

    return GuardedServer(config)


def run_server(app: Any, host: str, port: int, **options: Any) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or Ctrl-C (blocks); ``options`` of :func:`server_config`."""
    server = guarded_server(server_config(app, host, port, **options))
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
