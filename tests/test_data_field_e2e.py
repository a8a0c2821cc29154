"""`elope train` (1 epoch), `evaluate` and `predict` on each dataset of issue 29 read from its real layout (the
fake trees of fake_field.py), the CPU on a tiny ResNet-18; the NABirds run checked in detail."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_field import (
    make_fake_dogs,
    make_fake_flowers,
    make_fake_inat,
    make_fake_nabirds,
    make_fake_pets,
)

from elope.cli import main
from elope.data import build_dataset

MAKERS: dict[str, Callable[[Path], Path]] = {
    "nabirds": lambda root: make_fake_nabirds(root, train_per_class=6, test_per_class=2),
    "dogs": make_fake_dogs,
    "inat2017": lambda root: make_fake_inat(root, 2017),
    "inat2018": lambda root: make_fake_inat(root, 2018),
    "inat2021": lambda root: make_fake_inat(root, 2021),
    "flowers102": make_fake_flowers,
    "pets": make_fake_pets,
}


def _train(name: str, root: Path, out: Path) -> None:
    args = ["train", "--dataset", name, "--root", str(root), "--out", str(out),
            "--backbone", "resnet18", "--no-pretrained", "--image-size", "64", "--batch-size", "4",
            "--epochs", "1", "--workers", "0", "--stages", "classifier",
            "--set", "model.embedding_dim=16", "--set", "train.progress=false"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_trains_evaluates_and_predicts(name: str, tmp_path: Path) -> None:
    root = MAKERS[name](tmp_path / name)
    out = tmp_path / "run"
    _train(name, root, out)
    test = build_dataset(name, root, "test")
    if name == "nabirds":  # UUID image ids, sparse class ids: the run names the classes the images have
        header = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        # the recipe's holdout: 10 % of the 18 training images carved off as the validation split
        assert header["classes"] == 3 and header["train"] == {"split": "train", "images": 15}
        meta = json.loads((out / "model" / "model.json").read_text())
        assert (
            meta["classes"]
            == test.classes
            == [
                "Rose-breasted Grosbeak (Adult Male)",
                "Rose-breasted Grosbeak (Female/Immature)",
                "Northern Cardinal (Adult Male)",
            ]
        )
    report = tmp_path / "test.json"
    result = CliRunner().invoke(main, ["evaluate", "--run", str(out), "--json", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())
    assert metrics["num_images"] == len(test) and 0.0 <= metrics["top1"] <= 100.0
    result = CliRunner().invoke(main, ["predict", "--run", str(out), "--json", test.samples[0][0]])
    assert result.exit_code == 0, result.output
    (prediction,) = json.loads(result.stdout)
    assert prediction["classes"][0]["class"] in test.classes
