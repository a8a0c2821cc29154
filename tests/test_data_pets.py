"""Oxford-IIIT Pet: trainval.txt / test.txt, breeds and species, VOC head boxes for the trainval images,
damage found by `data check`, a root one level off named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_field import make_fake_pets

from elope.commands.data import data
from elope.data import AnnotationError, DatasetNotFoundError, build_dataset, index_dataset


@pytest.fixture
def fake_pets(tmp_path: Path) -> Path:
    return make_fake_pets(tmp_path / "pets")


def _check(root: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(data, ["check", "--dataset", "pets", "--root", str(root), "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_lists_breeds_and_head_boxes(fake_pets: Path) -> None:
    train = build_dataset("pets", fake_pets, "trainval")
    test = build_dataset("pets", fake_pets, "test")
    assert len(train) == 12 and len(test) == 6
    assert train.classes == ["Abyssinian", "american_bulldog", "Bengal"]  # class ids 1, 2, 6
    assert train.taxonomy == [
        {"id": "1", "species": "cat"},
        {"id": "2", "species": "dog"},
        {"id": "6", "species": "cat"},
    ]
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4 and test.targets == [0, 0, 1, 1, 2, 2]
    image, label, box = train[5]  # american_bulldog_2, trainval image 6: VOC 6, 3, 18, 20
    assert image.shape == (3, 36, 48) and label == 1
    assert box.tolist() == [5.0, 2.0, 18.0, 20.0]
    assert all(math.isnan(v) for v in test[0][2].tolist())  # test images have no head box
    code, report = _check(fake_pets)
    assert code == 0 and report["splits"] == {
        "train": {"images": 12, "boxes": 12},
        "test": {"images": 6, "boxes": 0},
    }


def test_torchvision_layout_is_accepted(tmp_path: Path) -> None:
    make_fake_pets(tmp_path / "oxford-iiit-pet")
    assert len(build_dataset("pets", tmp_path, "test")) == 6


def test_damage_is_reported(fake_pets: Path) -> None:
    annotations = fake_pets / "annotations"
    (fake_pets / "images" / "Bengal_2.jpg").unlink()  # a missing image
    _edit(annotations / "trainval.txt", "Abyssinian_2 1 1 1", "Abyssinian_2 38 1 1")  # label out of range
    _edit(annotations / "trainval.txt", "Abyssinian_3 1 1 1", "Abyssinian_3 1 1")  # a malformed line (3)
    _edit(annotations / "test.txt", "Bengal_6 6 1 2", "Bengal_6 2 1 2")  # the class of another breed
    (annotations / "xmls" / "Bengal_1.xml").write_text("<annotation><object><bndbox><xmin>a</xmin>")
    code, report = _check(fake_pets)
    problems = "\n".join(f"{p['path']}: {p['problem']}" for p in report["problems"])
    assert code == 1
    assert "Bengal_2.jpg: image file is missing" in problems
    assert "trainval.txt: line 2: class id 38 is out of range (1..37)" in problems
    assert "trainval.txt: line 3: expected 4 fields" in problems
    assert (
        "test.txt: line 6: class id 2 is american_bulldog (dog) on line 5 of trainval.txt, but Bengal_6 (cat) here"
        in problems
    )
    assert "Bengal_1.xml: is not a valid XML annotation" in problems
    with pytest.raises(AnnotationError, match="elope data check --dataset pets"):
        build_dataset("pets", fake_pets, "train")


def test_root_one_level_off_names_the_folder(fake_pets: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=rf"pointed inside the dataset; pass --root {fake_pets}\.$"
    ):
        index_dataset("pets", fake_pets / "annotations")
    with pytest.raises(DatasetNotFoundError, match=rf"one level below .*pass --root {fake_pets}\.$"):
        index_dataset("pets", tmp_path)
