"""Smoke tests of the benchmark scripts: each main runs in a tiny configuration and reports its ratios.

No timing is asserted (the figures depend on the machine and its load); only that the code paths run and
that the result dicts and the printed reports carry the ratio fields.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import classes, common, gpu, gpu_breakdown, inference, pooling, train_step


def test_interleaved_rotates_and_ratios() -> None:
    calls: list[str] = []
    timings = common.interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1, inner=2
    )
    assert calls[:2] == ["a", "b"]  # warm-up
    assert calls[2:] == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]  # order rotates
    assert set(timings) == {"a", "b"} and all(len(v) == 3 for v in timings.values())
    ratio = timings.ratio("b", "a")
    assert set(ratio) == {"ratio_of_medians", "median_paired_ratio"}
    assert common.paired_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0


def test_num_threads_restores() -> None:
    before = torch.get_num_threads()
    with common.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_inference_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inference.json"
    result = inference.main(
        [
            "--backbone",
            "resnet18",
            "--image-size",
            "64",
            "--batch-sizes",
            "1",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert result["macs"]["ratio"] > 1.0
    assert [entry["batch_size"] for entry in result["batches"]] == [1, 2]
    for entry in result["batches"]:
        assert entry["ratio"]["median_paired_ratio"] > 0 and entry["ratio"]["ratio_of_medians"] > 0
        assert {"baseline", "elope", "localize", "crop", "head", "resize"} <= set(entry["median_ms"])
        assert isinstance(entry["meets_target"], bool)
        share = entry["share_of_baseline"]
        assert entry["ratio_by_parts"] == pytest.approx(1 + share["localize"] + share["crop"] + share["head"])
        assert 0 < share["head"] < 1
    assert json.loads(out.read_text())["benchmark"] == "inference"
    printed = capsys.readouterr().out
    assert "MACs" in printed and "ratio" in printed and "ratio by parts" in printed


def test_train_step_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = (
        "--backbone resnet18 --image-size 64 --batch-size 2 --repeats 2 --warmup 0 --threads 1 --aa --json -"
    )
    result = train_step.main(argv.split())
    assert set(result["median_ms"]) == {"plain", "elope", "plain_twin"}
    assert result["ratio"]["median_paired_ratio"] > 0 and result["aa_ratio"]["median_paired_ratio"] > 0
    assert result["paper_setting"] is False and result["flush_denormal"] is True
    printed = capsys.readouterr().out
    assert "NOT the paper's" in printed and "ratio" in printed and "A/A control" in printed
    assert json.loads(printed.strip().splitlines()[-1])["benchmark"] == "train_step"


def test_pooling_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    result = pooling.main(["--shape", "2", "16", "7", "7", "--repeats", "2", "--warmup", "0", "--inner", "1"])
    for mode in ("forward", "forward_backward"):
        assert set(result[mode]["median_ms"]) == {"gap", "topk", "topk_sorted", "sort"}
        assert set(result[mode]["ratio_vs_gap"]) == {"topk", "topk_sorted", "sort"}
        assert result[mode]["sort_vs_topk"] > 0
    assert result["faster_of_sort_and_topk"] in {"sort", "topk"}
    assert "faster of sort and topk" in capsys.readouterr().out


def test_classes_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29 item 3 in a tiny configuration (no memory processes); a probe in this process."""
    result = classes.main(
        ["--classes", "20", "300", "--dim", "8", "--batch", "8", "--repeats", "2", "--warmup", "0",
         "--backbone-batch", "0", "--eval-images", "500", "--eval-batch", "64", "--no-memory", "--threads", "1"]
    )  # fmt: skip
    assert set(result["step"]["median_ms"]) == {"C=20", "C=300", "C=300 allrows"}
    assert result["step"]["ratio_vs_first"]["C=20"] == 1.0
    (evaluation,) = result["memory"]["evaluation"].values()
    assert evaluation["num_images"] == 500 and 0.0 < evaluation["top1"] < 1.0
    assert "former all-rows loss" in capsys.readouterr().out
    assert classes.probe("train:30:8:8")["peak_rss_mb"] > 0


def test_classes_all_rows_loss_equals_the_shipped_one() -> None:
    labels = classes.balanced_labels(50, 12, 4, seed=0)
    x = torch.randn(12, 8)
    shipped, former = classes.ClassMeanLoss(50, 8), classes.AllRowsLoss(50, 8)
    former.means.copy_(shipped.means)
    assert torch.equal(shipped(x, labels), former(x, labels)) and torch.equal(shipped.means, former.means)


def test_gpu_script_cpu_smoke() -> None:
    result = gpu.main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--amp",
            "none",
            "--steps",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
        ]
    )
    assert set(result["images_per_s"]) == {"plain_train", "elope_train", "plain_infer", "elope_infer"}
    assert result["ratio"]["train_time"] > 0 and result["ratio"]["infer_time"] > 0
    assert result["memory"]["elope_train"] is None  # peak memory is a CUDA figure


def test_gpu_script_autocast_path_on_cpu() -> None:
    result = gpu.run(
        device="cpu",
        backbone="resnet18",
        image_size=64,
        train_batch=2,
        infer_batch=1,
        amp="bf16",
        steps=1,
        rounds=1,
        warmup=0,
        threads=1,
    )
    assert result["amp"] == "bf16" and result["images_per_s"]["elope_infer"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_gpu_script_without_cuda_exits_clearly() -> None:
    with pytest.raises(SystemExit, match="no CUDA device is available"):
        gpu.main([])


def test_gpu_breakdown_cpu_smoke(tmp_path) -> None:
    out = tmp_path / "breakdown.json"
    result = gpu_breakdown.main(
        ["--device", "cpu", "--tiny", "--iters", "1", "--amp", "none", "--json", str(out)]
    )
    parts = result["ms"]
    for name in ("resize_antialias_bilinear", "localizer_stem_head", "heatmap_to_box", "crop_and_resize"):
        assert parts[name] > 0, name
    assert result["ratios"]["predict_over_plain"] == pytest.approx(
        parts["elope_predict"] / parts["plain_forward"]
    )
    assert result["ratios"]["train_step_over_plain"] == pytest.approx(
        parts["elope_train_step"] / parts["plain_train_step"]
    )
    assert result["profiles"] == {}  # the operator tables are CUDA-only
    assert json.loads(out.read_text())["ms"] == parts


def test_gpu_breakdown_profiles_five_calls_each_in_its_mode(monkeypatch) -> None:
    """The CUDA-only profiling loop of gpu_breakdown, run on a CPU with the profiler and the sync stubbed."""

    class FakeProfile:
        def __init__(self, activities: list) -> None:
            self.activities = activities

        def __enter__(self) -> FakeProfile:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def key_averages(self) -> SimpleNamespace:
            return SimpleNamespace(table=lambda sort_by, row_limit: f"{sort_by} {row_limit}")

    monkeypatch.setattr(torch.profiler, "profile", FakeProfile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: None)
    model = torch.nn.Linear(1, 1)
    seen: list[tuple[str, bool, bool]] = []

    def record(name: str) -> Callable[[], None]:
        return lambda: seen.append((name, model.training, torch.is_inference_mode_enabled()))

    calls = {"elope_predict": record("predict"), "elope_train_step": record("step")}
    tables = gpu_breakdown._profiles(model, calls, contextlib.nullcontext, torch.device("cpu"), 3)
    assert tables == {"elope_predict": "cuda_time_total 3", "elope_train_step": "cuda_time_total 3"}
    assert seen == [("predict", False, True)] * 5 + [("step", True, False)] * 5


def test_shards_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29 item 2 in a tiny configuration: shards against the folder, both pipelines, their ratios."""
    from benchmarks import shards

    result = shards.main(
        ["--num-images", "20", "--image-size", "64", "--input-size", "32", "--shard-size", "5",
         "--batch-size", "4", "--repeats", "1", "--threads", "1"]
    )  # fmt: skip
    assert set(result["images_per_s"]) == {"folder bytes", "folder train", "shards bytes", "shards train"}
    assert result["images"] == 20 and all(r > 0 for r in result["ratio_shards_vs_folder"].values())
    assert "shards / folder, train" in capsys.readouterr().out


def test_ray_predict_rates_and_sameness() -> None:
    """benchmarks.ray_predict's steady rate drops the small run out; its check tells other answers apart
    (Ray itself runs in tests/test_ray.py)."""
    from benchmarks import ray_predict

    rates = ray_predict._rates(100, 12.0, 20, 10.0)
    assert rates["wall_images_per_s"] == 100 / 12.0 and rates["steady_images_per_s"] == 80 / 2.0
    item = {"path": "a.jpg", "classes": [{"index": 1, "score": 0.6}, {"index": 0, "score": 0.4}]}
    other = {"path": "a.jpg", "classes": [{"index": 0, "score": 0.6}, {"index": 1, "score": 0.4}]}
    assert ray_predict._same([item], [item]) and not ray_predict._same([item], [other])
