"""Smoke tests of benchmarks/serve.py (load on `elope serve`, against onnxruntime directly) and
benchmarks/ort_profile.py (where the pipeline's time goes in onnxruntime), in tiny configurations; no timing
is asserted, only that every request was answered and the reports hold what docs/results.md quotes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")


def test_serve_benchmark_smoke(served_onnx, capsys):
    from benchmarks import serve as bench

    args = [
        "--model",
        str(served_onnx),
        "--clients",
        "1",
        "3",
        "--seconds",
        "2",
        "--requests",
        "15",
        "--soak",
        "30",
    ]
    result = bench.main([*args, "--direct-seconds", "0.2", "--server", "--max-batch", "4"])
    assert [level["clients"] for level in result["levels"]] == [1, 3]
    for level in result["levels"]:
        assert level["errors"] == 0 and 0 < level["requests"] <= 15 and level["p50_ms"] <= level["p99_ms"]
        assert level["server_peak_rss_mib"] > 10 and level["ratio_to_direct_b1"] > 0
    assert (
        result["soak"]["errors"] == 0
        and result["soak"]["requests"] == 30
        and len(result["soak"]["rss_mib"]) > 2
    )
    assert result["server_exit_code_after_sigterm"] == 0 and "--max-batch 4" in " ".join(
        result["server_options"]
    )
    assert "| clients | requests | req/s" in capsys.readouterr().out


def test_ort_profile_smoke():
    from benchmarks import ort_profile

    args = (
        "--backbone resnet18 --image-size 64 --input-size 96 --runs 1 --warmup 0 --threads 1 --num-classes 3"
    )
    result = ort_profile.main([*args.split(), "--variants", "all", "peak"])
    profiles = result["profiles"]
    assert set(profiles) == {"plain", "elope-all", "elope-peak"}
    assert "Conv" in profiles["plain"]["kernel_ms_by_op"] and profiles["elope-all"]["ratio_to_plain_wall"] > 0


def test_serve_locust_benchmark_smoke(served_onnx, capsys):
    """benchmarks/serve_locust.py: locust users against a real server, beside onnxruntime directly."""
    import importlib.util

    if importlib.util.find_spec("locust") is None:  # not imported here: locust patches ssl with gevent
        pytest.skip("locust is not installed (pip install -e '.[bench]')")
    from benchmarks import serve_locust

    args = ["--model", str(served_onnx), "--users", "1", "2", "--seconds", "2", "--direct-seconds", "0.2"]
    result = serve_locust.main([*args, "--max-batch", "4"])
    assert [level["users"] for level in result["levels"]] == [1, 2]
    for level in result["levels"]:
        assert level["failures"] == 0 and level["requests"] > 0 and level["p50_ms"] <= level["p99_ms"]
        assert level["server_peak_rss_mib"] > 10 and level["ratio_to_direct_b1"] > 0
    assert result["server_exit_code_after_sigterm"] == 0
    assert "| users | requests | req/s | p50 ms | p99 ms | failures" in capsys.readouterr().out
