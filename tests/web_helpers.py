"""Helpers of the ``elope web`` tests: where onnxruntime-web is installed, and the static file server,
headless Chromium and in-page calls of benchmarks/browser.py (one copy for the tests and the benchmark)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.browser import call_page, chromium, chromium_paths, static_server  # noqa: E402

CHROMIUM, DRIVER = chromium_paths()

__all__ = ["CHROMIUM", "DRIVER", "REPO", "call_page", "chromium", "ort_dist", "static_server"]


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
