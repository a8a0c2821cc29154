"""`elope data check`: counts, every kind of problem, JSON output and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from fake_datasets import make_fake_folder

from elope.commands.data import data
from elope.data import check_dataset


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(data, ["check", *args])
    return result.exit_code, result.stdout, result.stderr


def _json(name: str, root: Path) -> tuple[int, dict]:
    code, out, _ = _run("--dataset", name, "--root", str(root), "--json")
    return code, json.loads(out)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_clean_dataset_json_and_exit_0(fake_cub: Path) -> None:
    code, report = _json("cub", fake_cub)
    assert code == 0
    assert report == {
        "num_classes": 3,
        "splits": {"train": {"images": 12, "boxes": 12}, "test": {"images": 6, "boxes": 6}},
        "problems": [],
    }


def test_human_output(fake_cub: Path) -> None:
    (fake_cub / "CUB_200_2011" / "images" / "001.Class_1" / "Class_1_0001.jpg").unlink()
    code, out, _ = _run("--dataset", "cub", "--root", str(fake_cub))
    assert code == 1
    assert "classes: 3" in out and "train" in out and "12" in out
    assert "1 problem(s):" in out and "Class_1_0001.jpg: image file is missing" in out


def test_every_cub_problem_is_reported(fake_cub: Path) -> None:
    base = fake_cub / "CUB_200_2011"
    images = base / "images"
    (images / "001.Class_1" / "Class_1_0002.jpg").unlink()  # missing image (id 2)
    truncated = images / "002.Class_2" / "Class_2_0001.jpg"  # id 7
    truncated.write_bytes(truncated.read_bytes()[:120])
    (images / "003.Class_3" / "Class_3_0001.jpg").write_bytes(b"garbage")  # id 13
    _edit(base / "images.txt", "\n4 001.Class_1/Class_1_0004.jpg\n", "\n4\n")  # malformed, line 4
    _edit(base / "image_class_labels.txt", "\n5 1\n", "\n5 7\n")  # label out of range, line 5
    _edit(base / "bounding_boxes.txt", "\n3 3.0 2.5 10.0 6.25\n", "\n3 40.0 2.5 20.0 6.25\n")  # x2 = 60 > 48
    _edit(base / "train_test_split.txt", "\n6 0\n", "\n")  # id 6 only in some files
    with (base / "image_class_labels.txt").open("a") as f:
        f.write("99 1\n")  # id 99 not in images.txt
    code, report = _json("cub", fake_cub)
    assert code == 1
    found = {(Path(p["path"]).name, p["problem"]) for p in report["problems"]}
    expected_fragments = [
        ("Class_1_0002.jpg", "image file is missing"),
        ("Class_2_0001.jpg", "unreadable image"),
        ("Class_3_0001.jpg", "unreadable image"),
        ("images.txt", "line 4: expected 2 fields"),
        ("image_class_labels.txt", "line 5: class id 7 is out of range"),
        ("Class_1_0003.jpg", "box x1=40 y1=2.5 x2=60 y2=8.75 lies outside the 48x32 image"),
        ("images.txt", "line 6: image id 6 has no line in train_test_split.txt"),
        ("image_class_labels.txt", "line 19: image id 99 is not in images.txt"),
        ("image_class_labels.txt", "line 4: image id 4 is not in images.txt"),
    ]
    for name, fragment in expected_fragments:
        assert any(n == name and fragment in p for n, p in found), (name, fragment, found)
    assert len(report["problems"]) == len(expected_fragments) + 2  # id 4 also lacks images.txt in 2 files


def test_unreadable_dataset_exit_2(tmp_path: Path) -> None:
    code, out, err = _run("--dataset", "aircraft", "--root", str(tmp_path), "--json")
    assert code == 2 and out == ""
    assert "expected" in err and str(tmp_path / "fgvc-aircraft-2013b" / "data" / "variants.txt") in err


def test_no_decode_reads_headers_only(fake_cub: Path) -> None:
    path = fake_cub / "CUB_200_2011" / "images" / "001.Class_1" / "Class_1_0001.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(noise).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert check_dataset("cub", fake_cub, decode=False).ok
    assert not check_dataset("cub", fake_cub).ok


def test_pixel_cap(fake_cub: Path) -> None:
    report = check_dataset("cub", fake_cub, max_pixels=1000)
    assert len(report.problems) == 18 and "refused to decode" in report.problems[0].problem


def test_cars_problems(fake_cars: Path) -> None:
    path = fake_cars / "devkit" / "cars_train_annos.mat"
    annotations = scipy.io.loadmat(path)["annotations"]
    annotations[0, 1]["class"] = np.array([[0]], dtype=np.uint8)
    annotations[0, 2]["bbox_x2"] = np.array([[300]], dtype=np.uint16)
    scipy.io.savemat(path, {"annotations": annotations})
    (fake_cars / "cars_test" / "00004.jpg").unlink()
    code, report = _json("cars", fake_cars)
    assert code == 1
    assert report["splits"] == {"train": {"images": 11, "boxes": 11}, "test": {"images": 6, "boxes": 6}}
    problems = [(Path(p["path"]).name, p["problem"]) for p in report["problems"]]
    assert (
        "cars_train_annos.mat",
        "annotation 2 (00002.jpg): class 0 is out of range (cars_meta.mat has 1..3)",
    ) in problems
    assert ("00003.jpg", "box x1=2 y1=1 x2=300 y2=30 lies outside the 60x40 image") in problems
    assert ("00004.jpg", "image file is missing (image 00004.jpg)") in problems
    assert len(problems) == 3


def test_aircraft_problems_and_levels(fake_aircraft: Path) -> None:
    base = fake_aircraft / "fgvc-aircraft-2013b" / "data"
    code, report = _json("aircraft", fake_aircraft)
    assert code == 0 and report["num_classes"] == 5
    assert report["splits"]["trainval"] == {"images": 20, "boxes": 20}
    _edit(base / "images_box.txt", "0000002 2 3 32 60", "0000002 2 3 32")  # malformed, line 2
    _edit(base / "images_manufacturer_test.txt", "Airbus", "Boeing Airbus")  # unknown name
    _edit(base / "images_variant_trainval.txt", "0000001 707-320\n", "")  # in train, not in trainval
    code, out, _ = _run(
        "--dataset", "aircraft", "--root", str(fake_aircraft), "--json", "--annotation-level", "manufacturer"
    )
    problems = [(Path(p["path"]).name, p["problem"]) for p in json.loads(out)["problems"]]
    assert code == 1
    assert (
        "images_box.txt",
        "line 2: expected 5 fields '<image_id> <xmin> <ymin> <xmax> <ymax>', got '0000002 2 3 32'",
    ) in problems
    assert any(
        n == "images_manufacturer_test.txt" and "class 'Boeing Airbus' is not in manufacturers.txt" in p
        for n, p in problems
    )
    assert any(
        n == "images_manufacturer_train.txt" and "image 0000002 is not in images_box.txt" in p
        for n, p in problems
    )
    # the variant trainval file is not read at the manufacturer level
    assert not any("trainval" in n for n, _ in problems)
    variant = check_dataset("aircraft", fake_aircraft)
    assert any(
        p.problem == "line 1: image 0000001 is not in images_variant_trainval.txt" for p in variant.problems
    )


def test_folder_problems(fake_folder: Path) -> None:
    make_fake_folder(fake_folder, classes=("zeta",), counts={"test": 1})
    (fake_folder / "train" / "beta" / "img_1.jpg").write_bytes(b"\xff\xd8\xff")
    code, report = _json("folder", fake_folder)
    assert code == 1
    problems = {(Path(p["path"]).name, p["problem"].split(":")[0]) for p in report["problems"]}
    assert ("zeta", "class folder 'zeta' is not in " + str(fake_folder / "train")) in problems
    assert ("img_1.jpg", "unreadable image") in problems
    assert report["splits"]["train"] == {"images": 12, "boxes": 0}


@pytest.mark.parametrize("name", ["cub", "cars", "folder"])
def test_wrong_layout_exit_2(tmp_path: Path, name: str) -> None:
    code, _, err = _run("--dataset", name, "--root", str(tmp_path))
    assert code == 2 and "error:" in err and "expected" in err
