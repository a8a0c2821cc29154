"""Serving an ONNX file needs onnxruntime, numpy and Pillow, not torch: ``elope.serve`` imports no other part
of elope but the torch-free base modules ``elope.pixels`` (decoded pixels), ``elope.exported`` (the
export metadata, with ``elope.spec``) and ``elope.page_assets`` (the web pages' shared files) and no torch
(checked on their source), and importing the command line, the command and the app leaves torch out of ``sys.modules`` (checked in a fresh interpreter; tests/test_serve_faults.py checks a
whole ``elope serve`` run too). The command's options: one of --model / --run, clear errors; --run exports
the run in memory and serves the same answers as the exported file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from elope.cli import main

SERVE = Path(__file__).resolve().parents[1] / "elope" / "serve"
HEAVY = ("torch", "torchvision", "elope.nn", "elope.data", "elope.deploy", "elope.runs", "elope.engine")
BASE = Path(__file__).resolve().parents[1] / "elope"
ALLOWED = (
    "elope.serve",
    "elope.pixels",
    "elope.exported",
    "elope.spec",
    "elope.page_assets",
)  # the serve layer and its base


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_serve_package_imports_nothing_heavy():
    sources = [
        *SERVE.glob("*.py"),
        *(BASE / n for n in ("pixels.py", "exported.py", "spec.py", "page_assets/__init__.py")),
    ]
    offending = {
        f"{p.name}: {m}"
        for p in sources
        for m in _imports(p)
        if m.startswith(HEAVY) or (m.startswith("elope") and not m.startswith(ALLOWED))
    }
    assert not offending
    assert _imports(SERVE / "app.py") >= {
        "elope.serve.batching",
        "elope.serve.images",
    }  # the check sees imports


def test_importing_the_command_and_app_leaves_torch_out(tmp_path):
    code = (
        "import sys, elope, elope.cli, elope.commands.serve, elope.serve.app, elope.serve.server;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_public_api_still_imports_on_first_use():
    import elope

    assert elope.ELoPE.__module__ == "elope.nn.model" and "ELoPE" in dir(elope)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = elope.Nope


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "one of --model FILE.onnx or --run RUN"),
        (["--model", "a.onnx", "--run", "r"], "one of --model FILE.onnx or --run RUN"),
        (["--model", "missing.onnx"], "missing.onnx not found"),
    ],
)
def test_serve_command_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code != 0 and message in result.output


@pytest.mark.parametrize("content", [b"not an onnx file", b""])
def test_a_file_that_is_not_onnx_is_refused_without_a_traceback(content, tmp_path):
    pytest.importorskip("onnxruntime")
    (tmp_path / "photo.onnx").write_bytes(content)
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "photo.onnx")])
    assert result.exit_code == 1 and "cannot load photo.onnx as an ONNX model" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, RuntimeError)


def test_a_file_without_elope_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["scores"])],
        "plain",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "plain.onnx")
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "plain.onnx")])
    assert result.exit_code == 1 and "carries no 'elope' metadata" in result.output


def test_serve_run_exports_in_memory(synthetic_root, served_onnx, tmp_path):
    pytest.importorskip("onnxruntime")
    from serve_helpers import SOURCE, tiny_model

    from elope.commands.serve import _load
    from elope.runs.model_folder import save_model
    from elope.serve.model import ServedModel

    model, classes = tiny_model(synthetic_root)
    meta = {"classes": classes, "dataset": "synthetic", "root": str(synthetic_root)}
    save_model(model, tmp_path / "run" / "model", meta)
    before = set(Path(tmp_path).rglob("*"))
    from_run = _load(None, tmp_path / "run", None, 10**7)
    assert set(Path(tmp_path).rglob("*")) == before  # nothing left behind in the run folder
    from_file = ServedModel(served_onnx, max_pixels=10**7)
    assert (
        from_run.classes == from_file.classes
        and from_run.input_size == SOURCE
        and "exported" in from_run.label
    )
    images = np.random.default_rng(1).normal(size=(2, 3, SOURCE, SOURCE)).astype(np.float32)
    a, b = from_run.run(images), from_file.run(images)
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=0.5)
