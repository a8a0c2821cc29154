"""Running the application with uvicorn: bound to 127.0.0.1 by default, SIGTERM drains and exits 0.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets the requests in flight finish (up to
``grace_s`` seconds), then runs the application's shutdown, which finishes the batcher's queue. uvicorn then
raises the signal again for the default handler, which would end the process with status 143; a no-op
handler installed around the run makes a drained SIGTERM exit with 0 instead (Ctrl-C keeps its 130).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

__all__ = ["run_server"]


def _drained(signum: int, frame: FrameType | None) -> None:
    """SIGTERM raised again by uvicorn once the server drained: nothing more to do, exit normally."""


def run_server(
    app: Any, host: str, port: int, *, grace_s: float, access_log: bool = False, log_level: str = "info"
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or Ctrl-C (blocks)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        timeout_graceful_shutdown=int(grace_s) + 1,
    )
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
