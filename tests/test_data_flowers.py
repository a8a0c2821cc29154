"""Oxford Flowers-102: imagelabels.mat and setid.mat, the official train / val / test splits, damage found by
`data check`, a root one level off named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from fake_datasets import CLASS_COLOURS
from fake_field import make_fake_flowers

from elope.commands.data import data
from elope.data import AnnotationError, DatasetNotFoundError, build_dataset, index_dataset


@pytest.fixture
def fake_flowers(tmp_path: Path) -> Path:
    return make_fake_flowers(tmp_path / "flowers")


def _check(root: Path) -> tuple[int, dict, str]:
    result = CliRunner().invoke(data, ["check", "--dataset", "flowers102", "--root", str(root), "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.output


def test_official_splits_and_labels(fake_flowers: Path) -> None:
    splits = {s: build_dataset("flowers102", fake_flowers, s) for s in ("train", "val", "test", "trainval")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 6, "val": 6, "test": 6, "trainval": 12}
    train = splits["train"]
    assert train.classes == ["001", "002", "003"] and train.taxonomy[0] == {"id": "1"}
    # trnid lists images 1..6; image n has label (2n) % 3 + 1
    assert train.targets == [2, 1, 0, 2, 1, 0] and splits["val"].targets == [2, 1, 0, 2, 1, 0]
    assert train.samples[0][0].endswith("jpg/image_00001.jpg")
    image, label, box = train[0]
    assert image.shape == (3, 30, 40) and label == 2 and not train.has_boxes
    assert all(abs(int(v) - c) < 8 for v, c in zip(image[:, 15, 20], CLASS_COLOURS[2]))
    assert all(math.isnan(v) for v in box.tolist())
    code, report, _ = _check(fake_flowers)
    assert code == 0 and report["splits"]["val"] == {"images": 6, "boxes": 0}


def test_torchvision_layout_is_accepted(tmp_path: Path) -> None:
    make_fake_flowers(tmp_path / "flowers-102")
    assert len(build_dataset("flowers102", tmp_path, "test")) == 6


def test_damage_is_reported(fake_flowers: Path) -> None:
    (fake_flowers / "jpg" / "image_00004.jpg").unlink()  # a missing image
    labels = scipy.io.loadmat(fake_flowers / "imagelabels.mat")["labels"]
    labels[0, 1] = 103  # image 2: a label out of range
    scipy.io.savemat(fake_flowers / "imagelabels.mat", {"labels": labels})
    setid = {k: v for k, v in scipy.io.loadmat(fake_flowers / "setid.mat").items() if not k.startswith("__")}
    setid["tstid"] = np.concatenate([setid["tstid"], [[40]]], axis=1).astype(np.uint16)  # names no image
    scipy.io.savemat(fake_flowers / "setid.mat", setid)
    code, report, _ = _check(fake_flowers)
    problems = "\n".join(f"{p['path']}: {p['problem']}" for p in report["problems"])
    assert code == 1
    assert "image_00004.jpg: image file is missing" in problems
    assert "imagelabels.mat: image 2: label 103 is out of range (1..102)" in problems
    assert "setid.mat: tstid entry 7: image 40 is not one of the 18 images of imagelabels.mat" in problems
    with pytest.raises(AnnotationError, match="elope data check --dataset flowers102"):
        build_dataset("flowers102", fake_flowers, "train")


def test_a_missing_setid_is_named(fake_flowers: Path) -> None:
    (fake_flowers / "setid.mat").unlink()
    code, _, output = _check(fake_flowers)
    assert code == 2 and "setid.mat" in output


def test_root_one_level_off_names_the_folder(fake_flowers: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=rf"pointed inside the dataset; pass --root {fake_flowers}\.$"
    ):
        index_dataset("flowers102", fake_flowers / "jpg")
    (tmp_path / "down").mkdir()
    with pytest.raises(DatasetNotFoundError, match=rf"one level below .*pass --root {fake_flowers}\.$"):
        index_dataset("flowers102", tmp_path)
