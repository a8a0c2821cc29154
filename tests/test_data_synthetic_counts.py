"""The procedural set's per-class training counts (a long-tailed training split, issue 18 part 4): the
library call, the recipe key ``dataset.synthetic.train`` and ``elope data synth --train 40,4,...``."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from elope.commands.data import data
from elope.config import ConfigError, load_config
from elope.data import build_dataset, write_synthetic


def test_synthetic_per_class_training_counts(tmp_path: Path):
    root = write_synthetic(tmp_path / "s", classes=3, train=[5, 2, 3], test=2, size=32)
    assert collections.Counter(build_dataset("synthetic", root, "trainval").targets) == {0: 5, 1: 2, 2: 3}
    assert collections.Counter(build_dataset("synthetic", root, "test").targets) == {0: 2, 1: 2, 2: 2}
    assert json.loads((root / "elope_synthetic.json").read_text())["args"]["train"] == [5, 2, 3]
    balanced = write_synthetic(tmp_path / "b", classes=3, train=5, test=2, size=32)
    images = lambda r: [p.read_bytes() for p in (r / "CUB_200_2011" / "images").rglob("*.jpg")]  # noqa: E731
    # the long-tailed set is a subset of the balanced one: image k of a class and split does not depend on
    # the other counts (only its file number does)
    assert len(images(root)) == 16 and set(images(root)) <= set(images(balanced))
    with pytest.raises(ValueError, match="one per class"):
        write_synthetic(tmp_path / "c", classes=3, train=[5, 2], test=2, size=32)
    with pytest.raises(ConfigError, match="list of 12 such counts"):
        load_config("synthetic", overrides={"dataset.synthetic.train": [40, 4]})


def test_data_synth_takes_a_list_of_counts(tmp_path: Path):
    result = CliRunner().invoke(data, ["synth", "--out", str(tmp_path / "s"), "--classes", "2", "--train",
                                       "3,2", "--test", "1", "--size", "32"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 7 images" in result.output
    bad = CliRunner().invoke(data, ["synth", "--out", str(tmp_path / "t"), "--train", "3,x"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
