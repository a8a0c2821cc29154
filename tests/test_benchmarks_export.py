"""Smoke tests of benchmarks/export.py (onnxruntime latency of the exported pipeline) and of the compiled
mode of benchmarks/gpu.py: each runs in a tiny configuration; no timing is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("onnxruntime")

from benchmarks import export as export_bench
from benchmarks import gpu


def test_export_benchmark_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export.json"
    args = "--backbone resnet18 --image-size 64 --input-size 96 --batch-sizes 1 2 --repeats 1 --warmup 0"
    result = export_bench.main([*args.split(), "--threads", "1", "--num-classes", "5", "--json", str(out)])
    assert [b["batch_size"] for b in result["batches"]] == [1, 2]
    for entry in result["batches"]:
        assert set(entry["median_ms"]) == {"ort_plain", "ort_elope", "torch_plain", "torch_elope"}
        assert entry["ratio"]["ort_elope / ort_plain"]["median_paired_ratio"] > 0
    assert json.loads(out.read_text())["benchmark"] == "export"
    assert "ort_elope / ort_plain" in capsys.readouterr().out


def test_gpu_compiled_mode_cpu_smoke(tmp_path: Path) -> None:
    """`benchmarks/gpu.py --compile`: eager and compiled contenders in one run (aot_eager on the CPU)."""
    out = tmp_path / "gpu.json"
    args = "--device cpu --tiny --amp none --compile default --compile-backend aot_eager --steps 1 --rounds 1"
    result = gpu.main([*args.split(), "--warmup", "0", "--threads", "1", "--json", str(out)])
    names = set(result["images_per_s"])
    assert {"plain_infer_b2", "elope_infer_b2", "plain_infer_b2_compiled", "elope_infer_b2_compiled"} <= names
    assert {"plain_train", "elope_train", "plain_train_compiled", "elope_train_compiled"} <= names
    for key in ("infer_time_b2", "infer_time_b2_compiled", "elope_infer_b2_speedup", "train_time_compiled"):
        assert result["ratio"][key] > 0, key
    assert json.loads(out.read_text())["benchmark"] == "gpu-compiled"
