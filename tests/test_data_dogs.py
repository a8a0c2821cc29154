"""Stanford Dogs: the .mat lists, breed names from the folders, VOC XML boxes (the largest dog), its damage
found by `data check`, a root one level off named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import scipy.io
from click.testing import CliRunner
from fake_field import make_fake_dogs

from elope.commands.data import data
from elope.data import AnnotationError, DatasetNotFoundError, build_dataset, index_dataset


@pytest.fixture
def fake_dogs(tmp_path: Path) -> Path:
    return make_fake_dogs(tmp_path / "dogs")


def _check(root: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(data, ["check", "--dataset", "dogs", "--root", str(root), "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def test_lists_labels_and_boxes(fake_dogs: Path) -> None:
    train = build_dataset("dogs", fake_dogs, "trainval")
    test = build_dataset("dogs", fake_dogs, "test")
    assert len(train) == 12 and len(test) == 6
    assert train.classes == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"]
    assert train.taxonomy[2] == {"id": "3", "wnid": "n02086240"}
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4 and test.targets == [0, 0, 1, 1, 2, 2]
    image, label, box = test[3]  # test image 4: VOC 4, 2, 24, 30
    assert image.shape == (3, 40, 60) and label == 1
    assert box.tolist() == [3.0, 1.0, 24.0, 30.0]
    assert train[0][2].tolist() == [0.0, 1.0, 21.0, 30.0]  # two dogs: the larger one's box


def test_lists_at_the_top_as_lists_tar_extracts_them(fake_dogs: Path) -> None:
    for name in ("train_list.mat", "test_list.mat"):
        shutil.move(fake_dogs / "lists" / name, fake_dogs / name)
    assert len(build_dataset("dogs", fake_dogs, "test")) == 6


def test_damage_is_reported(fake_dogs: Path) -> None:
    images = fake_dogs / "Images"
    (images / "n02085620-Chihuahua" / "n02085620_2.jpg").unlink()  # a missing image
    (fake_dogs / "Annotation" / "n02085782-Japanese_spaniel" / "n02085782_5").write_text("<annotation><obj")
    (fake_dogs / "Annotation" / "n02086240-Shih-Tzu" / "n02086240_9").unlink()  # a missing box file
    path = fake_dogs / "lists" / "test_list.mat"
    content = scipy.io.loadmat(path)
    content["labels"][1, 0] = 121.0  # a label out of range
    scipy.io.savemat(path, {k: v for k, v in content.items() if not k.startswith("__")})
    code, report = _check(fake_dogs)
    problems = "\n".join(f"{p['path']}: {p['problem']}" for p in report["problems"])
    assert code == 1
    assert "n02085620_2.jpg: image file is missing" in problems
    assert "n02085782_5: is not a valid XML annotation" in problems
    assert (
        "n02086240_9: the box annotation of n02086240-Shih-Tzu/n02086240_9.jpg (train_list.mat, entry 9)"
        in problems
    )
    assert (
        "test_list.mat: entry 2 (n02085620-Chihuahua/n02085620_1002.jpg): label 121 is out of range"
        in problems
    )
    with pytest.raises(AnnotationError, match="elope data check --dataset dogs"):
        build_dataset("dogs", fake_dogs, "train")


def test_a_broken_list_file_is_named(fake_dogs: Path) -> None:
    (fake_dogs / "lists" / "train_list.mat").write_bytes(b"not a mat file")
    result = CliRunner().invoke(data, ["check", "--dataset", "dogs", "--root", str(fake_dogs)])
    assert result.exit_code == 2 and "cannot read" in result.output and "train_list.mat" in result.output


def test_root_one_level_off_names_the_folder(fake_dogs: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=rf"you pointed inside the dataset; pass --root {fake_dogs}\.$"
    ):
        index_dataset("dogs", fake_dogs / "Images")
    with pytest.raises(DatasetNotFoundError, match=rf"one level below .*pass --root {fake_dogs}\.$"):
        index_dataset("dogs", tmp_path)
