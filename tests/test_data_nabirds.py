"""NABirds: UUID image ids, sparse class ids mapped to 0..C-1, CUB-style boxes, the hierarchy kept, its
damage found by `data check`, a root one level off named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_field import make_fake_nabirds

from elope.commands.data import data
from elope.data import AnnotationError, DatasetNotFoundError, build_dataset, index_dataset


@pytest.fixture
def fake_nabirds(tmp_path: Path) -> Path:
    return make_fake_nabirds(tmp_path / "nb")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _check(root: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(data, ["check", "--dataset", "nabirds", "--root", str(root), "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def test_splits_sparse_classes_boxes_and_hierarchy(fake_nabirds: Path) -> None:
    train = build_dataset("nabirds", fake_nabirds, "trainval")
    test = build_dataset("nabirds", fake_nabirds / "nabirds", "test")  # nabirds/ itself is accepted
    assert len(train) == 12 and len(test) == 6
    # ids 295, 296, 313 have images, 0/1/2 are inner nodes and 400 a leaf without images: labels 0..2
    assert train.classes == [
        "Rose-breasted Grosbeak (Adult Male)",
        "Rose-breasted Grosbeak (Female/Immature)",
        "Northern Cardinal (Adult Male)",
    ]
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4 and test.targets == [0, 0, 1, 1, 2, 2]
    assert train.taxonomy[2] == {
        "id": "313",
        "parent": "Cardinals, Grosbeaks, and Allies",
        "lineage": "Birds > Perching Birds > Cardinals, Grosbeaks, and Allies",
    }
    image, label, box = test[2]  # image 11: x = 11, y = 2, w = 10, h = 6
    assert image.shape == (3, 32, 48) and label == 1
    assert box.tolist() == [11.0, 2.0, 21.0, 8.0]
    assert train.samples[0][0].endswith(".jpg") and "/images/0295/" in train.samples[0][0]


def test_clean_tree_passes_data_check(fake_nabirds: Path) -> None:
    code, report = _check(fake_nabirds)
    assert code == 0 and report["problems"] == [] and report["num_classes"] == 3
    assert report["splits"]["train"] == {"images": 12, "boxes": 12}


def test_damage_is_reported(fake_nabirds: Path) -> None:
    base = fake_nabirds / "nabirds"
    lines = (base / "images.txt").read_text().splitlines()
    first_name = lines[0].split()[1]
    second_id = lines[1].split()[0]
    third_id = lines[2].split()[0]
    (base / "images" / first_name).unlink()  # a missing image
    _edit(base / "image_class_labels.txt", f"{second_id} 295", f"{second_id} 999")  # label out of range
    _edit(base / "images.txt", f"{third_id} ", f"{third_id}\n")  # a malformed line (line 3)
    (base / "images.txt").write_text((base / "images.txt").read_text() + "deadbeef 0295/gone.jpg\n")
    code, report = _check(fake_nabirds)
    problems = "\n".join(f"{p['path']}: {p['problem']}" for p in report["problems"])
    assert code == 1
    assert f"{first_name}: image file is missing" in problems
    assert "image_class_labels.txt: line 2: class id 999 is out of range" in problems
    assert "images.txt: line 3: expected 2 fields" in problems
    assert "image id deadbeef has no line in image_class_labels.txt" in problems  # listed, unlabelled
    with pytest.raises(AnnotationError, match="elope data check --dataset nabirds"):
        build_dataset("nabirds", fake_nabirds, "train")


def test_root_one_level_off_names_the_folder(fake_nabirds: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=rf"pass --root {fake_nabirds / 'nabirds'}"):
        index_dataset("nabirds", fake_nabirds / "nabirds" / "images")  # pointed inside
    with pytest.raises(DatasetNotFoundError, match=rf"one level below .*pass --root {fake_nabirds}\.$"):
        index_dataset("nabirds", tmp_path)  # pointed one above
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"expected .*nabirds/hierarchy\.txt") as error:
        index_dataset("nabirds", elsewhere)
    assert "pass --root" not in str(error.value)  # nowhere near: only what is expected
