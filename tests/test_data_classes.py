"""``dataset.options.classes`` / ``all_images`` (the zero-shot retrieval protocol, issue 18) on the real
layouts' fake trees, and the procedural set's per-class training counts (a long-tailed split)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_datasets import CLASS_COLOURS, make_fake_cars, make_fake_cub, make_fake_folder

from elope.commands.data import data
from elope.config import ConfigError, load_config
from elope.config_options import class_subset
from elope.data import build_dataset, write_synthetic


def test_class_subset_by_hand():
    assert class_subset("all", 5) == range(5)
    assert class_subset("first-half", 200) == range(100) and class_subset("second-half", 200) == range(
        100, 200
    )
    assert class_subset("first-half", 5) == range(2) and class_subset("second-half", 5) == range(2, 5)
    assert class_subset("2-3", 5) == range(1, 3) and class_subset(" 1 - 5 ", 5) == range(5)
    for bad in ("half", "0-3", "3-2", "1-", ""):
        with pytest.raises(ValueError, match="class subset|A-B"):
            class_subset(bad, 5)
    with pytest.raises(ValueError, match=r"dataset.options.classes='2-9'.*5 classes"):
        class_subset("2-9", 5)


@pytest.mark.parametrize("name", ["cub", "cars", "folder"])
def test_subsets_keep_their_classes_renumbered_with_their_own_images(tmp_path: Path, name: str):
    make = {"cub": make_fake_cub, "cars": make_fake_cars, "folder": make_fake_folder}[name]
    root = make(tmp_path / name, 4) if name != "folder" else make(tmp_path / name, 4)
    full = build_dataset(name, root, "trainval")
    second = build_dataset(name, root, "trainval", classes="second-half")
    assert second.classes == full.classes[2:] and sorted(set(second.targets)) == [0, 1]
    for i in range(len(second)):
        image, label, _ = second[i]  # the pixels tell the true class: label 0 is the dataset's class 2
        assert tuple(image[:, 4, 4].tolist()) == pytest.approx(CLASS_COLOURS[label + 2], abs=6)
    test = build_dataset(name, root, "test", classes="first-half")
    assert test.classes == full.classes[:2] and len(test) == 2 * len(build_dataset(name, root, "test")) // 4


def test_all_images_pools_train_and_test_of_the_chosen_classes(tmp_path: Path):
    """The CUB protocol of metric-learning papers: every image of classes 1-100 to train, every image of
    101-200 to retrieve among."""
    root = make_fake_cub(tmp_path / "cub", 4, train_per_class=4, test_per_class=2)
    train = build_dataset("cub", root, "trainval", classes="first-half", all_images=True)
    test = build_dataset("cub", root, "test", classes="second-half", all_images=True)
    assert collections.Counter(train.targets) == {0: 6, 1: 6} == collections.Counter(test.targets)
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    carved = build_dataset("cub", root, "val", classes="first-half", all_images=True, val_fraction=0.5)
    assert collections.Counter(carved.targets) == {0: 3, 1: 3}


def test_recipe_and_command_line_values_are_checked():
    cfg = load_config("cub", overrides={"dataset.options": {"classes": "first-half", "all_images": True}})
    assert cfg.dataset.options == {"classes": "first-half", "all_images": True}
    with pytest.raises(ConfigError, match="options.classes: classes='half' is not a class subset"):
        load_config("cub", overrides={"dataset.options.classes": "half"})


def test_synthetic_per_class_training_counts(tmp_path: Path):
    root = write_synthetic(tmp_path / "s", classes=3, train=[5, 2, 3], test=2, size=32)
    assert collections.Counter(build_dataset("synthetic", root, "trainval").targets) == {0: 5, 1: 2, 2: 3}
    assert collections.Counter(build_dataset("synthetic", root, "test").targets) == {0: 2, 1: 2, 2: 2}
    assert json.loads((root / "elope_synthetic.json").read_text())["args"]["train"] == [5, 2, 3]
    balanced = write_synthetic(tmp_path / "b", classes=3, train=5, test=2, size=32)
    tail = lambda r: sorted((r / "CUB_200_2011" / "images").rglob("*.jpg"))  # noqa: E731
    # the test images and the first training images do not depend on the other classes' counts
    same = [p.relative_to(balanced) for p in tail(balanced) if (root / p.relative_to(balanced)).exists()]
    assert all((root / p).read_bytes() == (balanced / p).read_bytes() for p in same) and len(same) >= 12
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
