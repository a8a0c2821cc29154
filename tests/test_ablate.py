"""`elope ablate`: the rows of Table 5, the K sweep and the summary statistics."""

import json

import click
import pytest
from click.testing import CliRunner

from elope.ablate import TABLE5, _parse_rows, format_markdown, k_sweep_rows, summarize
from elope.cli import main
from elope.config import load_config


def test_table5_rows_match_the_paper():
    assert [r.paper for r in TABLE5] == [81.2, 82.2, 82.7, 84.2, 84.1, 84.6, 84.4, 84.9, 86.9, 87.4]
    assert len({r.slug for r in TABLE5}) == len(TABLE5)
    for row in TABLE5:  # every row is a valid recipe
        cfg = load_config("synthetic", overrides=row.overrides)
        assert cfg.model.pooling == row.overrides["model.pooling"]
    assert TABLE5[0].overrides["model.pooling"] == "gap" and TABLE5[0].overrides["loss.variant"] == "none"
    assert TABLE5[-1].overrides["train.stages"] == ["classifier", "localizer", "crop", "weighted"]
    assert TABLE5[4].overrides["loss.variant"] == "center" and TABLE5[5].overrides["loss.variant"] == "dff"


def test_k_sweep_rows():
    rows = k_sweep_rows([1, 4, 16])
    assert [r.overrides["model.k"] for r in rows] == [1, 4, 16]
    assert all(r.overrides["model.pooling"] == "gkmp" for r in rows)


def test_summary_mean_and_sample_std():
    results = {
        "GAP": [
            {
                "seed": 0,
                "epochs": 3,
                "top1": 0.5,
                "ncm_top1": None,
                "loc_iou50": None,
                "mean_map_iou50": 0.25,
            },
            {
                "seed": 1,
                "epochs": 3,
                "top1": 0.7,
                "ncm_top1": None,
                "loc_iou50": None,
                "mean_map_iou50": 0.75,
            },
        ]
    }
    (entry, empty) = summarize(TABLE5[:2], results)
    assert entry["top1"] == pytest.approx(60.0)
    assert entry["top1_std"] == pytest.approx(14.1421356, rel=1e-6)  # sqrt(((10)² + (10)²) / (2 - 1))
    assert entry["ncm_top1"] is None and entry["mean_map_iou50"] == pytest.approx(50.0)
    assert empty["top1"] is None and empty["seeds"] == []
    table = format_markdown([entry, empty], "t")
    assert "| GAP | 60.0 ± 14.1 | — | — | 2 | 3 | 81.2 |" in table


def test_parse_rows():
    assert _parse_rows("1,3-4", 10) == [0, 2, 3]
    assert _parse_rows(None, 3) == [0, 1, 2]
    with pytest.raises(click.BadParameter, match=r"not in 1\.\.10"):
        _parse_rows("11", 10)


@pytest.mark.slow
def test_ablate_one_row_end_to_end(tmp_path):
    args = [
        "ablate",
        "--out",
        str(tmp_path),
        "--rows",
        "1",
        "--epochs",
        "1",
        "--set",
        "dataset.synthetic.classes=3",
        "--set",
        "dataset.synthetic.train=12",
        "--set",
        "dataset.synthetic.test=2",
        "--set",
        "dataset.synthetic.size=48",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert summary[0]["row"] == "GAP" and summary[0]["seeds"] == [0]
    assert 0.0 <= summary[0]["top1"] <= 100.0
    assert "| GAP |" in (tmp_path / "ablation.md").read_text()
    # a finished row-seed is not trained again
    mtime = (tmp_path / "gap" / "seed0" / "result.json").stat().st_mtime
    assert CliRunner().invoke(main, args).exit_code == 0
    assert (tmp_path / "gap" / "seed0" / "result.json").stat().st_mtime == mtime
