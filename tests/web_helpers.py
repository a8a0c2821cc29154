"""Helpers of the ``elope web`` tests and of benchmarks/browser.py's test: where onnxruntime-web is installed,
a static file server on a free loopback port (what any static host does), and headless Chromium."""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def ort_dist() -> Path | None:
    """onnxruntime-web's dist folder: $ELOPE_ORT_WEB, else .ci/web (where .ci/run installs it), else the
    repository's node_modules; None when none has it."""
    from elope.deploy.web import _dist_of

    places = [os.environ.get("ELOPE_ORT_WEB"), REPO / ".ci" / "web", REPO]
    for place in filter(None, places):
        dist = _dist_of(Path(place))
        if dist is not None:
            return dist
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - http.server's own class attribute, extended
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """``folder`` served as static files on a free loopback port, in a thread: its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def browser(width: int = 1200, height: int = 880):
    """Headless Debian Chromium driven by selenium (chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(300)
    return driver


def call_page(driver, expression: str):
    """Await the page's ``expression`` (a promise, e.g. ``elopeWeb.predictUrl('a.png')``) and return its
    value; a rejection becomes a RuntimeError with the page's message."""
    result = driver.execute_async_script(
        f"""const done = arguments[arguments.length - 1];
        Promise.resolve().then(() => {expression}).then((v) => done({{ok: v}}), (e) => done({{error: String(e)}}));"""
    )
    if "error" in result:
        raise RuntimeError(f"the page failed: {result['error']}")
    return result["ok"]
