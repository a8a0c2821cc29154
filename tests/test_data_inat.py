"""iNaturalist 2017 / 2018 / 2021: COCO-style JSON, categories in id order, the taxonomy kept, 2017's boxes
(in the JSON or its box files), val as the test split, damage found by `data check`, a root one level off."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_field import make_fake_inat

from elope.commands.data import data
from elope.data import AnnotationError, DatasetNotFoundError, build_dataset, index_dataset

YEARS = (2017, 2018, 2021)
TRAIN_JSON = {2017: "train2017.json", 2018: "train2018.json", 2021: "train.json"}
VAL_JSON = {2017: "val2017.json", 2018: "val2018.json", 2021: "val.json"}


def _check(year: int, root: Path) -> tuple[int, dict, str]:
    result = CliRunner().invoke(data, ["check", "--dataset", f"inat{year}", "--root", str(root), "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.output


@pytest.mark.parametrize("year", YEARS)
def test_splits_categories_and_taxonomy(year: int, tmp_path: Path) -> None:
    root = make_fake_inat(tmp_path / "inat", year)
    train = build_dataset(f"inat{year}", root, "trainval")
    test = build_dataset(f"inat{year}", root, "test")  # the competition's val
    assert len(train) == 12 and len(test) == 6
    assert train.classes == [
        "Abies concolor",
        "Turdus migratorius",
        "Danaus plexippus",
    ]  # by id, not file order
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4 and test.targets == [0, 0, 1, 1, 2, 2]
    image, label, _ = test[5]
    assert image.shape == (3, 32, 48) and label == 2
    aves = train.taxonomy[1]
    assert aves["id"] == "1" and aves["supercategory"] == "Aves"
    if year != 2017:  # 2018: from categories.json; 2021: in the training JSON itself
        assert (aves["kingdom"], aves["order"], aves["genus"]) == ("Animalia", "Passeriformes", "Turdus")
    if year == 2021:
        assert aves["image_dir_name"].startswith("00001_Animalia_Chordata")
        assert "/train/00001_Animalia" in train.samples[4][0] and "/val/" in test.samples[0][0]
    code, report, _ = _check(year, root)
    assert code == 0 and report["problems"] == []
    assert report["splits"]["train"]["boxes"] == (4 if year == 2017 else 0)


def test_2017_boxes_from_the_box_file_and_the_json(tmp_path: Path) -> None:
    root = make_fake_inat(tmp_path / "inat", 2017)
    train = build_dataset("inat2017", root, "trainval")
    test = build_dataset("inat2017", root, "test")
    assert train.has_boxes
    assert train[4][2].tolist() == [5.0, 2.0, 15.0, 8.0]  # image 5: two boxes, the larger kept
    assert test[2][2].tolist() == [15.0, 2.0, 25.0, 8.0]  # val image 15: bbox in val2017.json
    assert all(math.isnan(v) for v in train[0][2].tolist())  # Plantae: no box


def test_2018_names_from_categories_json_else_obfuscated(tmp_path: Path) -> None:
    root = make_fake_inat(tmp_path / "inat", 2018)
    (root / "categories.json").unlink()
    index = index_dataset("inat2018", root)
    assert index.classes[1] == f"obfuscated{7919:08x}" and "kingdom" not in index.taxonomy[1]


def test_damage_is_reported(tmp_path: Path) -> None:
    root = make_fake_inat(tmp_path / "inat", 2021)
    content = json.loads((root / "train.json").read_text())
    (root / content["images"][0]["file_name"]).unlink()  # a missing image
    content["annotations"][1]["category_id"] = 57  # a label out of range
    content["annotations"].pop(2)  # an image without annotation
    content["images"][3] = {"id": 4}  # a malformed entry
    (root / "train.json").write_text(json.dumps(content))
    code, report, _ = _check(2021, root)
    problems = "\n".join(f"{p['path']}: {p['problem']}" for p in report["problems"])
    assert code == 1
    assert f"{content['images'][0]['file_name']}: image file is missing" in problems
    assert "train.json: images[1]: category_id 57 of image 2 is out of range" in problems
    assert "train.json: images[2]: image id 3 (" in problems and "has no annotation" in problems
    assert "train.json: images[3]: expected an object with an integer 'id' and a 'file_name'" in problems
    assert "train.json: annotations[2]: image id 4 is not in 'images'" in problems
    with pytest.raises(AnnotationError, match="elope data check --dataset inat2021"):
        build_dataset("inat2021", root, "train")


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    root = make_fake_inat(tmp_path / "inat", 2018)
    text = (root / "val2018.json").read_text()
    (root / "val2018.json").write_text(text.replace(", ", ",\n", 1)[:-10])  # cut short
    code, _, output = _check(2018, root)
    assert code == 2 and "val2018.json is not valid JSON: line 2 column" in output


@pytest.mark.parametrize("year", YEARS)
def test_root_one_level_off_names_the_folder(year: int, tmp_path: Path) -> None:
    root = make_fake_inat(tmp_path / "inat", year)
    inside = {2017: "train_val_images", 2018: "train_val2018", 2021: "train"}[year]
    with pytest.raises(DatasetNotFoundError, match=rf"pointed inside the dataset; pass --root {root}\.$"):
        index_dataset(f"inat{year}", root / inside)
    with pytest.raises(DatasetNotFoundError, match=rf"one level below .*pass --root {root}\.$"):
        index_dataset(f"inat{year}", tmp_path)
    (root / VAL_JSON[year]).unlink()
    with pytest.raises(
        DatasetNotFoundError, match=rf"validation file .*{VAL_JSON[year]} beside {TRAIN_JSON[year]}"
    ):
        index_dataset(f"inat{year}", root)
