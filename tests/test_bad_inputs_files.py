"""Bad inputs, second round (issue 21, docs/reliability.md): datasets, images, recipes and option values.

``data check`` finds a train/test leak, a class without images, a NaN box and the images a folder
dataset used to ignore; EXIF orientation is applied (and dataset boxes follow it); a FIFO in a dataset is
reported, never opened; ``data synth --force`` deletes only what it wrote; a recipe never holds inf, NaN,
an unknown dataset option or a seed numpy cannot take, and an alias bomb is refused in milliseconds;
``profile`` and ``ablate`` refuse values they cannot run. None of these needs a trained run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import assert_clean_exit, deadline, error_lines, invoke
from fake_datasets import make_fake_cub, make_fake_folder
from PIL import Image

from elope.data import build_dataset, load_image
from elope.data.io import image_dimensions, orient_box

CUB = "CUB_200_2011"


@pytest.fixture
def cub(tmp_path: Path) -> Path:
    return make_fake_cub(tmp_path / "cub")


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


# ---------------------------------------------------------------------------------------- data check
def _leak(base: Path) -> None:  # image 1 (training) listed again as image 19, a test image
    _append(base / "images.txt", "19 001.Class_1/Class_1_0001.jpg")
    _append(base / "image_class_labels.txt", "19 1")
    _append(base / "train_test_split.txt", "19 0")
    _append(base / "bounding_boxes.txt", "19 1.0 2.5 10.0 6.25")


def _nan_box(base: Path) -> None:
    path = base / "bounding_boxes.txt"
    path.write_text(path.read_text().replace("\n7 7.0 2.5 10.0 6.25\n", "\n7 nan 2.5 10.0 6.25\n"))


CHECK_CASES = {
    "train/test leak": (_leak, "listed as a training image (id 1) and as a test image (id 19)"),
    "class without images": (
        lambda base: _append(base / "classes.txt", "4 004.Class_4"),
        "class '004.Class_4' (label 3) has no training images",
    ),
    "NaN box": (_nan_box, "box of image 7 is not finite (nan 2.5 nan 8.75)"),
}


@pytest.mark.parametrize("case", CHECK_CASES)
def test_data_check_finds_what_used_to_pass(case: str, cub: Path, tmp_path: Path) -> None:
    change, needle = CHECK_CASES[case]
    change(cub / CUB)
    result = invoke("data", "check", "--dataset", "cub", "--root", cub)
    assert_clean_exit(result, 1, needle)
    trained = invoke(
        "train", "--dataset", "cub", "--root", cub, "--out", tmp_path / "out", "--backbone", "resnet18",
        "--no-pretrained", "--image-size", "40", "--epochs", "0",
    )  # fmt: skip
    assert_clean_exit(trained, 1, needle, "elope data check")  # training stops on it too
    assert not (tmp_path / "out").exists()


def test_folder_dataset_reads_every_image_format_and_reports_the_rest(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "folder")
    cls = sorted((root / "train").iterdir())[0]
    picture = Image.new("RGB", (40, 30), (30, 160, 60))
    for name in ("extra.gif", "extra.tif", "extra.ico", "extra.avif"):
        try:
            picture.save(cls / name)
        except (OSError, KeyError, ValueError):  # no AVIF encoder in this Pillow
            assert name.endswith(".avif")
    (cls / "notes.txt").write_text("a note: not an image, left alone")
    (cls / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.mkfifo(cls / "pipe.jpg")
    before = len(build_dataset("folder", make_fake_folder(tmp_path / "plain"), "trainval"))
    expected = before + sum(f.suffix in (".gif", ".tif", ".ico", ".avif") for f in cls.iterdir())
    with deadline(60):
        result = invoke("data", "check", "--dataset", "folder", "--root", root, "--json")
    assert_clean_exit(result, 1, "pipe.jpg", "a FIFO (named pipe), not a regular file", "photo.heic")
    report = json.loads(result.output)
    assert report["splits"]["train"]["images"] == expected  # .gif, .tif, .ico (and .avif) are read
    assert not any("notes.txt" in p["path"] for p in report["problems"])
    (cls / "pipe.jpg").unlink()
    (cls / "photo.heic").unlink()
    assert len(build_dataset("folder", root, "trainval")) == expected


# ------------------------------------------------------------------------------------ EXIF orientation
def _oriented_jpeg(path: Path, orientation: int, stored: tuple[int, int] = (128, 64)) -> np.ndarray:
    """A JPEG stored at ``stored`` (W, H) with a white block at x 8..40, y 4..20 and the EXIF orientation."""
    pixels = np.zeros((stored[1], stored[0], 3), dtype=np.uint8)
    pixels[4:20, 8:40] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)
    return pixels


def _block(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image.mean(axis=-1) > 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_boxes_follow(orientation: int, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    _oriented_jpeg(path, orientation)
    image, size = load_image(path)
    turned = orientation >= 5
    assert size == ((64, 128) if turned else (128, 64)) == image.size == image_dimensions(path, oriented=True)
    assert image_dimensions(path) == (128, 64)  # the stored size, which dataset boxes refer to
    box = orient_box((8, 4, 40, 20), orientation, (128, 64))
    assert np.allclose(box, _block(np.asarray(image)), atol=1)


def test_dataset_boxes_turn_with_the_image(cub: Path) -> None:
    base = cub / CUB
    _oriented_jpeg(base / "images" / "001.Class_1" / "Class_1_0001.jpg", 6, stored=(48, 32))
    boxes = base / "bounding_boxes.txt"
    boxes.write_text(boxes.read_text().replace("1 1.0 2.5 10.0 6.25\n", "1 8 4 32 16\n", 1))  # x1..x2 8..40
    checked = invoke("data", "check", "--dataset", "cub", "--root", cub)  # the box fits the stored 48x32
    assert_clean_exit(checked, 0, "no problems found")
    dataset = build_dataset("cub", cub, "trainval")
    image, _, box = dataset[0]  # uint8 (3, H, W), upright: 32 wide, 48 high
    assert tuple(image.shape) == (3, 48, 32)
    assert torch.allclose(
        box, torch.tensor(_block(image.permute(1, 2, 0).numpy()), dtype=torch.float32), atol=1
    )


# -------------------------------------------------------------------------------------- data synth
def test_synth_force_deletes_only_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "set"
    small = ("--classes", "2", "--train", "1", "--test", "1", "--size", "32")
    assert_clean_exit(invoke("data", "synth", "--out", out, *small), 0, "wrote 4 images")
    class_dir = next((out / CUB / "images").iterdir())
    (class_dir / "my_photo.jpg").write_bytes(b"mine")
    (out / CUB / "notes.txt").write_text("mine too")
    result = invoke("data", "synth", "--out", out, *small, "--seed", "1", "--force")
    assert_clean_exit(
        result, 0, "--force: deleting the", "keeping 2 other file(s)", "my_photo.jpg", "notes.txt"
    )
    assert (class_dir / "my_photo.jpg").read_bytes() == b"mine" and (out / CUB / "notes.txt").is_file()
    assert len(build_dataset("synthetic", out, "trainval")) == 2  # the new set, whole


# ------------------------------------------------------------------------------- recipes and options
BOMB = "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize(
    ("recipe", "needle"),
    [
        (b"model: {k: 4}\n# caf\xe9\n", "is not UTF-8 text"),
        (
            ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB + "model: {k: *i}\n").encode(),
            "model.k",
        ),
        (b"dataset: {options: *x}\n", "is not valid YAML"),
    ],
)
def test_recipe_files_that_are_wrong(recipe: bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(recipe)
    start = time.monotonic()
    result = invoke("train", "--dataset", "synthetic", "--out", tmp_path / "out", "--config", path)
    assert time.monotonic() - start < 20
    assert_clean_exit(result, 1, needle)
    assert len(result.output) < 3000 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "code", "needle"),
    [
        (("--set", "dataset.options.foo=1"), 1, "options.foo is unknown for synthetic"),
        (("--set", "dataset.options.max_pixels=-5"), 1, "options.max_pixels"),
        (("--set", "dataset.options.annotation_level=family"), 1, "options.annotation_level is unknown"),
        (("--seed", "-1"), 2, "--seed"),
        (("--seed", str(2**64)), 2, "--seed"),
        (("--set", "train.seed=-3"), 1, "train.seed"),
    ],
)
def test_recipe_values_that_are_wrong(
    option: tuple[str, ...], code: int, needle: str, tmp_path: Path
) -> None:
    result = invoke("train", "--dataset", "synthetic", "--out", tmp_path / "out", *option)
    assert_clean_exit(result, code, needle)
    assert not (tmp_path / "out").exists()


def test_a_fifo_as_config_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "recipe.yaml")
    result = invoke(
        "train", "--dataset", "synthetic", "--out", tmp_path / "out", "--config", tmp_path / "recipe.yaml"
    )
    assert_clean_exit(result, 1, "is not a regular file")


def test_negative_max_pixels_is_not_reported_as_a_bomb(cub: Path) -> None:
    image = cub / CUB / "images" / "001.Class_1" / "Class_1_0001.jpg"
    with pytest.raises(ValueError, match="max_pixels must be at least 1, got -1"):
        load_image(image, max_pixels=-1)
    with pytest.raises(ValueError, match="max_pixels must be at least 1, got 0"):
        build_dataset("cub", cub, "trainval", max_pixels=0)


# ----------------------------------------------------------------------------------- profile, ablate
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("profile", "--image-size", "100000"), 2, "100000 is not in the range 1<=x<=2048"),
        (("profile", "--image-size", "32"), 1, "the smallest --image-size that works is 33"),
        (("ablate", "--rows", "3-1"), 2, "the range 3-1 is empty"),
        (("ablate", "--study", "k-sweep", "--ks", "0,foo"), 2, "'0' is not a K"),
        (("ablate", "--study", "k-sweep", "--ks", "2,foo"), 2, "'foo' is not a K"),
        (("ablate", "--set", "junk"), 1, "'junk' is not of the form key=value"),
    ],
)
def test_profile_and_ablate_values(args: tuple[str, ...], code: int, needle: str, tmp_path: Path) -> None:
    extra = ("--out", tmp_path / "ablation") if args[0] == "ablate" else ()
    result = invoke(*args, *extra)
    assert_clean_exit(result, code, needle)
    assert "model.k" not in result.output and len(error_lines(result)) >= 1
    assert not (tmp_path / "ablation").exists()
