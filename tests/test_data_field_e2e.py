"""`elope train` (1 epoch), `evaluate` and `predict` on a dataset of issue 29 read from its real layout: the
NABirds fake tree (UUID image ids, sparse class ids, boxes)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from fake_field import make_fake_nabirds

from elope.cli import main


def test_nabirds_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    root = make_fake_nabirds(tmp_path / "nb", train_per_class=6, test_per_class=2)
    out = tmp_path / "run"
    args = ["train", "--dataset", "nabirds", "--root", str(root), "--out", str(out),
            "--backbone", "resnet18", "--no-pretrained", "--image-size", "64", "--batch-size", "4",
            "--epochs", "1", "--workers", "0", "--stages", "classifier",
            "--set", "model.embedding_dim=16", "--set", "train.progress=false"]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    header = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    # the recipe's holdout: 10 % of the 18 training images carved off as the validation split
    assert header["classes"] == 3 and header["train"] == {"split": "train", "images": 15}
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["classes"] == ["Rose-breasted Grosbeak (Adult Male)", "Rose-breasted Grosbeak (Female/Immature)",
                               "Northern Cardinal (Adult Male)"]  # fmt: skip

    report = tmp_path / "test.json"
    result = runner.invoke(main, ["evaluate", "--run", str(out), "--json", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())
    assert metrics["num_images"] == 6 and 0.0 <= metrics["top1"] <= 100.0

    image = next((root / "nabirds" / "images" / "0313").glob("*.jpg"))
    result = runner.invoke(main, ["predict", "--run", str(out), "--json", str(image)])
    assert result.exit_code == 0, result.output
    (prediction,) = json.loads(result.stdout)
    assert prediction["classes"][0]["class"] in meta["classes"]
