"""``elope serve`` against its own OpenAPI document, fuzzed by a standard property-based API fuzzer
(schemathesis, every check: server errors, undocumented statuses or content types, response schemas,
schema-valid requests refused, schema-violating requests accepted, methods the document does not list
answered 405 with ``Allow``, ...): zero failures. Before: 5 failures in 33 cases (405 without ``Allow``, a
multipart body without an image schema-valid but refused, ``top`` past ``int``'s digits a 500).

A JSON schema cannot say "an image" (``format: binary`` is any bytes), so the fuzzer is told what an upload
is by ``tests/schemathesis_images.py`` (small real images of every accepted format and mode); everything
else it draws from the document. The run is seeded and bounded (about 200 requests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
from serve_helpers import REPO, thread_server

from elope.serve.app import Limits, create_app
from elope.serve.model import ServedModel

TESTS = Path(__file__).resolve().parent
RUN = "from schemathesis.cli import schemathesis; schemathesis()"


def test_the_fuzzer_finds_nothing(served_onnx, tmp_path):
    model = ServedModel(served_onnx, max_pixels=10**6)
    with thread_server(create_app(model, Limits(max_images=4, max_upload_bytes=2**20))) as url:
        env = {
            **os.environ,
            "PYTHONPATH": f"{TESTS}{os.pathsep}{REPO}",
            "SCHEMATHESIS_HOOKS": "schemathesis_images",
        }
        args = [url + "/openapi.json", "--checks", "all", "--max-examples", "60", "--seed", "20261207"]
        out = subprocess.run(
            [sys.executable, "-c", RUN, "run", *args, "--workers", "1", "--no-color"],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-6000:]
    assert "generated" in report and "failure" not in report.split("SUMMARY")[-1].lower(), report[-3000:]
