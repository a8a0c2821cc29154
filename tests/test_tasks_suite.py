"""``elope suite``: the generalization suite's runner, its statistics and its table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from elope.cli import main
from elope.research.suite import paired_interval, suite_table, summarize_suite

# The suite at toy scale: ResNet-18 from scratch at 64 px, 3 species, one epoch per stage.
TINY = [
    "model.backbone=resnet18", "model.pretrained=false", "model.embedding_dim=16", "dataset.image_size=64",
    "dataset.crop_source=96", "dataset.synthetic={classes: 3, train: 4, test: 3, size: 96, seed: 0}",
    *(f"stages.{s}.{k}={v}" for s in ("classifier", "localizer", "crop", "weighted")
      for k, v in (("epochs", 1), ("batch_size", 4))),
]  # fmt: skip


def test_paired_interval_is_the_t_interval_of_the_differences():
    diffs = [2.0, 5.0, 3.5]
    mean, low, high = paired_interval(diffs)
    half = stats.t.ppf(0.975, 2) * statistics.stdev(diffs) / 3**0.5
    assert mean == pytest.approx(3.5) and (low, high) == pytest.approx((3.5 - half, 3.5 + half))
    assert paired_interval([1.0]) is None


def _result(seed: int, gap: float, full: float, control: float, module: float, mean_map: float) -> dict:
    return {
        "seed": seed,
        "top1": {"gap": gap, "full": full, "control": control},
        "module_iou50": module,
        "mean_map_iou50": mean_map,
        "tau": 0.5 + 0.05 * seed,
    }


def _field(module_top1: float, map_top1: float, module_v2: float, map_v2: float) -> dict:
    return {
        "module": {"gt_known": 0.0, "top1_loc": module_top1, "maxboxacc_v2": {"value": module_v2}},
        "mean_map": {"gt_known": 0.0, "top1_loc": map_top1, "maxboxacc_v2": {"value": map_v2}},
    }


def test_the_fields_localization_metrics_are_columns_and_a_run_without_them_a_dash():
    runs = [_result(0, 0.5, 0.6, 0.55, 0.7, 0.5), _result(1, 0.4, 0.52, 0.46, 0.6, 0.5)]
    runs[0]["field"], runs[1]["field"] = _field(0.6, 0.4, 0.5, 0.3), _field(0.5, 0.3, 0.7, 0.2)
    (row,) = summarize_suite({"small": runs})
    assert row["module_top1_loc"] == pytest.approx((55.0, statistics.stdev([60.0, 50.0])))
    assert row["mean_map_top1_loc"][0] == pytest.approx(35.0)
    assert row["module_v2"][0] == pytest.approx(60.0) and row["mean_map_v2"][0] == pytest.approx(25.0)
    assert row["module_v2-mean_map_v2"] == pytest.approx(paired_interval([20.0, 50.0]))
    header, _, line = suite_table([row]).splitlines()
    assert "module top-1 loc %" in header and "teacher MaxBoxAccV2 %" in header
    assert "| 55.0 ± 7.1 | 35.0 ± 7.1 | 60.0 ± 14.1 | 25.0 ± 7.1 | +35.0 [" in line
    assert header.count("|") == line.count("|")

    del runs[1]["field"]  # a result.json of an older suite whose run folder is gone
    (row,) = summarize_suite({"small": runs})
    assert row["module_v2"] is None and row["module_v2-mean_map_v2"] is None
    assert "| — | — | — | — | — |" in suite_table([row])


def test_summary_pairs_by_seed_and_the_table_shows_it():
    runs = [_result(0, 0.50, 0.60, 0.55, 0.7, 0.5), _result(1, 0.40, 0.52, 0.46, 0.6, 0.5)]
    (row,) = summarize_suite({"small": runs})
    assert row["gap"] == pytest.approx((45.0, statistics.stdev([50.0, 40.0])))
    assert row["full-gap"][0] == pytest.approx(11.0) and row["full-control"][0] == pytest.approx(5.5)
    assert row["module-mean_map"][0] == pytest.approx(15.0)
    table = suite_table([row])
    assert "| small | 2 | 45.0 ± 7.1 | 56.0 ± 5.7 |" in table and "0.5, 0.55" in table


def test_two_distributions_add_a_row_pooling_every_pair():
    small = [_result(0, 0.50, 0.60, 0.55, 0.7, 0.5), _result(1, 0.40, 0.52, 0.46, 0.6, 0.5)]
    large = [_result(0, 0.90, 0.91, 0.90, 0.8, 0.6)]
    rows = summarize_suite({"small": small, "large": large})
    assert [r["dist"] for r in rows] == ["small", "large", "all"]
    pooled = rows[-1]
    assert pooled["seeds"] == [0, 1, 0] and pooled["full-gap"] == pytest.approx(
        paired_interval([10.0, 12.0, 1.0])
    )
    assert suite_table(rows).splitlines()[-1].startswith("| all | 3 | 60.0 ± 26.5 |")
    assert suite_table(rows).splitlines()[-1].endswith("| — |")


def test_unknown_distribution_is_refused(tmp_path: Path):
    result = CliRunner().invoke(main, ["suite", "--out", str(tmp_path / "s"), "--dists", "small,tiny"])
    assert result.exit_code == 2 and "unknown distribution(s) ['tiny']" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_one_distribution_one_seed_end_to_end_and_resumed(tmp_path: Path):
    out = tmp_path / "suite"
    args = ["suite", "--out", str(out), "--dists", "wide", "--seeds", "1"]
    for setting in TINY:
        args += ["--set", setting]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    result = json.loads((out / "wide" / "seed0" / "result.json").read_text())
    assert set(result["top1"]) == {"gap", "full", "crops", "control"} and result["test_images"] == 9
    # the shipped recipes' crop step (issue 28): a margin, and the decision on the held-out images
    assert result["decision"]["choice"] in ("crops", "whole") and result["box_margin"] == 0.15
    assert result["box_rule"] in ("all", "peak") and 0 <= result["module_iou50"] <= 1
    for split in ("trainval", "test"):
        assert set(result["localization"][split]["module"]) == {
            "all/cells",
            "all/up",
            "peak/cells",
            "peak/up",
        }
    field = result["field"]  # the localization metrics of the field, thresholds chosen on trainval
    assert field["module"]["gt_known"] == result["module_iou50"]
    assert field["mean_map"]["gt_known"] == result["mean_map_iou50"]
    for name in ("module", "mean_map"):
        assert 0 <= field[name]["top1_loc"] <= field[name]["gt_known"]
        v2 = field[name]["maxboxacc_v2"]
        assert v2["images"] == 9 and v2["selection_images"] == 12 and 0 <= v2["value"] <= 1
    # the control is the full run's own stage-1 classifier (crop.init fresh): no third run folder
    assert sorted(p.name for p in (out / "wide" / "seed0").iterdir()) == ["full", "gap", "result.json"]
    stamp = (out / "wide" / "seed0" / "result.json").stat().st_mtime_ns
    again = CliRunner().invoke(main, [*args, "--report"])
    assert again.exit_code == 0 and "| wide | 1 |" in again.output
    assert (out / "wide" / "seed0" / "result.json").stat().st_mtime_ns == stamp  # nothing trained again
    assert (out / "suite.md").read_text() in again.output

    # a result.json from before the field's metrics gets them from its run folder, the same numbers
    older = {k: v for k, v in result.items() if k != "field"}
    (out / "wide" / "seed0" / "result.json").write_text(json.dumps(older))
    third = CliRunner().invoke(main, [*args, "--report"])
    assert third.exit_code == 0 and "adding the localization metrics of the field" in third.output
    assert json.loads((out / "wide" / "seed0" / "result.json").read_text())["field"] == field


def test_crop_decision_columns():
    """Runs that decided (train.crop_decision holdout): full is the decided model, crops the crop pipeline;
    the table shows crops − control and how many runs chose whole images."""
    kept = _result(0, 0.50, 0.60, 0.55, 0.7, 0.5)
    kept["top1"]["crops"], kept["decision"] = 0.60, {"choice": "crops"}
    whole = _result(1, 0.40, 0.46, 0.46, 0.6, 0.5)  # whole images won: full is the control
    whole["top1"]["crops"], whole["decision"] = 0.42, {"choice": "whole"}
    (row,) = summarize_suite({"small": [kept, whole]})
    assert row["crops-control"][0] == pytest.approx((5.0 - 4.0) / 2)
    assert row["full-control"][0] == pytest.approx(2.5) and row["whole"] == 1
    assert "| 1/2 |" in suite_table([row])
    (old,) = summarize_suite({"small": [_result(0, 0.5, 0.6, 0.55, 0.7, 0.5)]})  # before the decision
    assert old["crops-control"] is None and old["whole"] == 0 and old["crops"][0] == pytest.approx(60.0)
