"""`elope ablate`: the rows of Table 5, the K sweep and the summary statistics."""

import json

import click
import pytest
from click.testing import CliRunner

from elope.cli import main
from elope.commands.ablate import _parse_rows
from elope.config import load_config
from elope.research.ablate import TABLE5, format_markdown, k_sweep_rows, summarize


def test_table5_rows_match_the_paper():
    paper = [81.2, 82.2, 82.7, 84.2, 84.1, 84.6, 84.4, 84.9, 86.9, 87.4, None]  # row 11: our control
    assert [r.paper for r in TABLE5] == paper
    assert len({r.slug for r in TABLE5}) == len(TABLE5)
    for row in TABLE5:  # every row is a valid recipe
        cfg = load_config("synthetic", overrides=row.overrides)
        assert cfg.model.pooling == row.overrides["model.pooling"]
    assert TABLE5[0].overrides["model.pooling"] == "gap" and TABLE5[0].overrides["loss.variant"] == "none"
    assert TABLE5[9].overrides["train.stages"] == ["classifier", "localizer", "crop", "weighted"]
    # the control trains the crop stage's epochs of row 9 on whole images: same losses, no localizer
    control, row9 = TABLE5[10].overrides, TABLE5[8].overrides
    assert control["train.stages"] == ["classifier", "crop"] and control["model.localizer"] is False
    assert {k: v for k, v in control.items() if k not in ("train.stages", "model.localizer")} == {
        k: v for k, v in row9.items() if k not in ("train.stages", "model.localizer")
    }
    assert TABLE5[4].overrides["loss.variant"] == "center" and TABLE5[5].overrides["loss.variant"] == "dff"
    # the center loss (raw features) gets Wen et al.'s λ; every other row keeps the recipe's (paper: 2)
    assert load_config("synthetic", overrides=TABLE5[4].overrides).loss.lambda_ == 0.003
    assert all("loss.lambda" not in row.overrides for i, row in enumerate(TABLE5) if i != 4)


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
    with pytest.raises(click.BadParameter, match="expected row numbers"):
        _parse_rows("1,x", 10)


@pytest.mark.slow
def test_ablate_rows_end_to_end_then_report(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset:\n  image_size: 64\n  synthetic: {classes: 3, train: 12, test: 2, size: 48, difficulty: default}\n"
        "model: {backbone: resnet18, pretrained: false, embedding_dim: 32}\n"
    )
    out = tmp_path / "ablation"
    args = ["ablate", "--out", str(out), "--config", str(recipe), "--epochs", "1"]
    result = CliRunner().invoke(main, [*args, "--rows", "1,11"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "ablation.json").read_text())
    assert [e["row"] for e in summary] == ["GAP", TABLE5[10].name]
    assert all(e["seeds"] == [0] and 0.0 <= e["top1"] <= 100.0 for e in summary)
    assert summary[1]["epochs"] == 2  # classifier + crop stage, one epoch each
    assert json.loads((out / "data" / "elope_synthetic.json").read_text())["args"]["classes"] == 3
    assert "| GAP |" in (out / "ablation.md").read_text()
    control = load_config(
        base=__import__("yaml").safe_load((out / TABLE5[10].slug / "seed0" / "config.yaml").read_text())
    )
    assert control.train.stages == ["classifier", "crop"] and control.model.localizer is False
    # a finished row-seed is not trained again
    mtime = (out / "gap" / "seed0" / "result.json").stat().st_mtime
    assert CliRunner().invoke(main, [*args, "--rows", "1"]).exit_code == 0
    assert (out / "gap" / "seed0" / "result.json").stat().st_mtime == mtime
    # --report trains nothing: it tabulates what is there, and says when a row has no result
    report = CliRunner().invoke(main, ["ablate", "--out", str(out), "--report", "--rows", "1,2"])
    assert report.exit_code != 0 and "some rows produced no result" in report.output
    assert not (out / "gmp").exists()
    assert "| GMP | — |" in (out / "ablation.md").read_text()


def test_k_sweep_plot_skips_rows_without_results(tmp_path):
    from PIL import Image

    from elope.research.ablate import plot_k_sweep

    rows = k_sweep_rows([1, 4, 16])
    runs = {"K=1": [{"seed": 0, "epochs": 2, "top1": 0.5}], "K=16": [{"seed": 0, "epochs": 2, "top1": 0.25}]}
    summary = summarize(rows, runs)
    assert [e["top1"] for e in summary] == [50.0, None, 25.0]
    path = plot_k_sweep(summary, [1, 4, 16], tmp_path / "k.png", positions=16)
    assert Image.open(path).size == (600, 420)  # 5 × 3.5 inches at 120 dpi
