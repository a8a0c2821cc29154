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
from benchmarks import quantize as quantize_bench


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


def test_quantize_benchmark_smoke(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/quantize.py on a given run (the tiny model of the serve tests): accuracy float32 / int8 on
    its test split, and the four speed contenders with their ratios."""
    from serve_helpers import tiny_model

    from elope.runs.model_folder import save_model

    model, classes = tiny_model(synthetic_root)
    save_model(
        model,
        tmp_path / "run" / "model",
        {"classes": classes, "dataset": "synthetic", "root": str(synthetic_root)},
    )
    out = tmp_path / "quantize.json"
    args = "--calibration-images 4 --backbone resnet18 --image-size 64 --num-classes 3 --repeats 1 --warmup 0"
    result = quantize_bench.main(
        [*args.split(), "--run", str(tmp_path / "run"), "--threads", "1", "--json", str(out)]
    )
    accuracy = result["accuracy"]
    assert accuracy["images"] == 6 and accuracy["calibration_images"] == 4
    assert 0.0 <= accuracy["agreement"] <= 1.0 and accuracy["boxes_max_px"] <= 0.5
    assert set(result["speed"]["ms_per_image"]) == {
        "elope_fp32",
        "elope_int8",
        "elope_int8_every_layer",
        "plain_fp32",
        "plain_int8",
    }
    assert result["speed"]["ratio"]["elope int8 / float32"]["median_paired_ratio"] > 0
    assert result["speed"]["ratio"]["elope int8 / every layer int8"]["median_paired_ratio"] > 0
    assert json.loads(out.read_text())["benchmark"] == "quantize"
    assert "elope / plain, int8" in capsys.readouterr().out
