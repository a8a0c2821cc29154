"""Bad inputs to ``elope data check`` / ``data synth`` and to the dataset readers (docs/reliability.md).

Each case changes a tiny fake dataset (tests/fake_datasets.py) the way a real one goes wrong and checks the
exit status, that no traceback escapes, and that the message names the file (and line) concerned.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from bad_inputs import assert_clean_exit, gradient_image, invoke, truncate
from fake_datasets import make_fake_aircraft, make_fake_cars, make_fake_cub, make_fake_folder
from PIL import Image

from elope.data import AnnotationError, build_dataset, load_image
from elope.data.io import to_rgb

CUB = "CUB_200_2011"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


def _image(base: Path, c: int, k: int) -> Path:
    return base / "images" / f"{c:03d}.Class_{c}" / f"Class_{c}_{k:04d}.jpg"


def _replace_image(base: Path, image: Image.Image, fmt: str = "JPEG") -> Path:
    path = _image(base, 2, 1)  # image id 7, a training image of class 2
    image.save(path, format=fmt)
    return path


def _symlink_loop(base: Path) -> Path:
    path = _image(base, 2, 2)
    path.unlink()
    os.symlink(path.name, path)  # links to itself
    return path


def _crlf(base: Path) -> None:
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"):
        path = base / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def _one_class(base: Path) -> None:
    (base / "classes.txt").write_text("1 001.Class_1\n")
    lines = [f"{i} 1" for i in range(1, 19)]
    (base / "image_class_labels.txt").write_text("\n".join(lines) + "\n")


def _outside(base: Path, name: str) -> None:
    _edit(base / "images.txt", "\n3 001.Class_1/Class_1_0003.jpg\n", f"\n3 {name}\n")


# name -> (change to root/CUB_200_2011, exit status of `data check`, text the output must hold)
CUB_CASES: dict[str, tuple[Callable[[Path], object], int, str]] = {
    "missing root": (lambda base: shutil.rmtree(base.parent), 2, "images.txt"),
    "missing annotation file": (lambda base: (base / "classes.txt").unlink(), 2, "classes.txt"),
    "truncated image": (lambda base: truncate(_image(base, 2, 1), 0.3), 1, "Class_2_0001.jpg"),
    "zero-byte image": (lambda base: _image(base, 2, 1).write_bytes(b""), 1, "Class_2_0001.jpg"),
    "missing image": (lambda base: _image(base, 1, 2).unlink(), 1, "Class_1_0002.jpg: image file is missing"),
    "PNG named .jpg": (
        lambda base: _replace_image(base, Image.new("RGB", (48, 32)), "PNG"),
        0,
        "no problems",
    ),
    "CMYK JPEG": (
        lambda base: _replace_image(base, Image.new("CMYK", (48, 32), (0, 50, 90, 10))),
        0,
        "no prob",
    ),
    "grey JPEG": (lambda base: _replace_image(base, Image.new("L", (48, 32), 90)), 0, "no problems"),
    "1x1 image": (
        lambda base: _replace_image(base, Image.new("RGB", (1, 1))),
        1,
        "lies outside the 1x1 image",
    ),
    "4000x10 image": (lambda base: _replace_image(base, Image.new("RGB", (4000, 10))), 0, "no problems"),
    "symlink loop": (_symlink_loop, 1, "Class_2_0002.jpg"),
    "decompression bomb": (
        lambda base: _replace_image(base, Image.new("1", (5000, 5000)), "PNG"),
        1,
        "Class_2_0001.jpg: unreadable image: refused to decode",
    ),
    "duplicate id": (
        lambda base: _edit(base / "images.txt", "\n4 001.Class_1/", "\n3 001.Class_1/"),
        1,
        "images.txt: line 4: id 3 already appears on line 3",
    ),
    "non-numeric id": (
        lambda base: _edit(base / "images.txt", "\n4 001.Class_1/", "\nfour 001.Class_1/"),
        1,
        "images.txt: line 4: expected",
    ),
    "box outside": (
        lambda base: _edit(base / "bounding_boxes.txt", "\n2 2.0 2.5", "\n2 200.0 2.5"),
        1,
        "Class_1_0002.jpg: box x1=200",
    ),
    "negative box": (
        lambda base: _edit(base / "bounding_boxes.txt", "\n2 2.0 2.5", "\n2 -30.0 2.5"),
        1,
        "Class_1_0002.jpg: box x1=-30",
    ),
    "zero-size box": (
        lambda base: _edit(base / "bounding_boxes.txt", "\n2 2.0 2.5 10.0", "\n2 2.0 2.5 0.0"),
        1,
        "bounding_boxes.txt: line 2: box of image 2 has width 0",
    ),
    "class id out of range": (
        lambda base: _edit(base / "image_class_labels.txt", "\n5 1\n", "\n5 9\n"),
        1,
        "image_class_labels.txt: line 5: class id 9 is out of range",
    ),
    "non-UTF-8 list file": (
        lambda base: (base / "classes.txt").write_bytes("1 Gr\xfcnfink\n2 b\n3 c\n".encode("latin-1")),
        1,
        "classes.txt: is not UTF-8 text",
    ),
    "CRLF list files": (_crlf, 0, "no problems found"),
    # fixed in issue 11
    "one class": (_one_class, 1, "has 1 class(es) ['001.Class_1']; classification needs at least 2"),
    "absolute path": (lambda base: _outside(base, "/etc/passwd"), 1, "images.txt: line 3: '/etc/passwd'"),
    "'..' path": (lambda base: _outside(base, "../../x.jpg"), 1, "images.txt: line 3: '../../x.jpg'"),
}


@pytest.mark.parametrize("case", list(CUB_CASES))
def test_data_check_of_a_damaged_cub(case: str, tmp_path: Path) -> None:
    change, code, needle = CUB_CASES[case]
    root = make_fake_cub(tmp_path / "cub")
    change(root / CUB)
    result = invoke("data", "check", "--dataset", "cub", "--root", root, "--max-pixels", "20000000")
    assert_clean_exit(result, code, needle)


@pytest.mark.parametrize("case", ["one class", "absolute path", "'..' path", "duplicate id"])
def test_training_reader_refuses_what_data_check_reports(case: str, tmp_path: Path) -> None:
    """The dataset class raises the first problem, naming the file (and the line), never opening it."""
    change, _, needle = CUB_CASES[case]
    root = make_fake_cub(tmp_path / "cub")
    change(root / CUB)
    with pytest.raises(AnnotationError) as info:
        build_dataset("cub", root, "train")
    assert needle.split(": ", 1)[-1] in str(info.value)
    assert str(root / CUB) in str(info.value)


def test_paths_leaving_the_root_in_cars_aircraft(tmp_path: Path) -> None:
    cars = make_fake_cars(tmp_path / "cars")
    mat = cars / "devkit" / "cars_train_annos.mat"
    annotations = scipy.io.loadmat(str(mat))["annotations"]
    annotations[0, 0]["fname"] = np.array(["../../secret.jpg"])
    scipy.io.savemat(mat, {"annotations": annotations})
    result = invoke("data", "check", "--dataset", "cars", "--root", cars)
    assert_clean_exit(result, 1, "cars_train_annos.mat: annotation 1 (../../secret.jpg): '../../secret.jpg'")

    aircraft = make_fake_aircraft(tmp_path / "aircraft")
    data = aircraft / "fgvc-aircraft-2013b" / "data"
    _edit(data / "images_variant_train.txt", "0000001 ", "../../../0000001 ")
    result = invoke("data", "check", "--dataset", "aircraft", "--root", aircraft)
    assert_clean_exit(result, 1, "images_variant_train.txt: line 1: '../../../0000001.jpg'")


def test_folder_link_loop_is_read_once_and_reported(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "folder")
    os.symlink(root / "train" / "alpha", root / "train" / "alpha" / "loop")
    result = invoke("data", "check", "--dataset", "folder", "--root", root)
    assert_clean_exit(result, 1, "train/alpha/loop: links back to")
    assert result.output.split("\ntrain")[1].split()[0] == "12"  # 3 classes x 4, not 40 copies of alpha


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_greyscale_images_keep_their_tones(mode: str, tmp_path: Path) -> None:
    """A 16-bit PNG used to decode to all white (Pillow clips at 255); now every mode scales to 8 bits."""
    path = tmp_path / ("ramp.tif" if mode in ("I", "F") else "ramp.png")
    expected = gradient_image(path, mode)
    assert Image.open(path).mode == mode
    image, size = load_image(path)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and size == (40, 30)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    assert np.abs(pixels[..., 0].astype(int) - expected).max() <= 1  # the ramp, not a white picture


def test_alpha_and_palette_images_are_composited_over_white(tmp_path: Path) -> None:
    alpha = np.tile(np.array([0, 255, 128], np.uint8), (4, 2))
    la = Image.fromarray(np.dstack([np.full((4, 6), 40, np.uint8), alpha]), "LA")
    rgb = np.asarray(to_rgb(la))
    assert rgb[0, 0].tolist() == [255, 255, 255]  # transparent: white
    assert rgb[0, 1].tolist() == [40, 40, 40]  # opaque: its grey
    assert rgb[0, 2].tolist() == [round(40 * 128 / 255 + 255 * 127 / 255)] * 3  # half: blended

    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50])
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 0  # colour 0 is transparent
    path = tmp_path / "p.png"
    palette.save(path)
    assert Image.open(path).mode == "P"
    pixels = np.asarray(load_image(path)[0])
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[1, 1].tolist() == [200, 100, 50]

    for mode in ("RGB", "L", "CMYK", "1"):  # the ordinary modes go through convert("RGB") unchanged
        image = Image.new(mode, (3, 2))
        assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(image.convert("RGB")))


def test_16_bit_image_trains_on_its_tones(tmp_path: Path) -> None:
    """What the training reader hands to the network from a 16-bit PNG is the image, not a white square."""
    root = make_fake_cub(tmp_path / "cub")
    base = root / CUB
    expected = gradient_image(base / "images" / "ramp.png", "I;16", (48, 32))
    _edit(base / "images.txt", "1 001.Class_1/Class_1_0001.jpg\n", "1 ramp.png\n")
    dataset = build_dataset("cub", root, "trainval")
    index = next(i for i, (p, _) in enumerate(dataset.samples) if p.endswith("ramp.png"))
    image = dataset[index][0]  # uint8 (3, H, W)
    assert np.abs(image[0].numpy().astype(int) - expected).max() <= 1


def test_synth_out_names_a_file(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("keep me")
    result = invoke("data", "synth", "--out", target, "--classes", "2", "--train", "1", "--test", "1")
    assert_clean_exit(result, 1, f"--out {target}: is a regular file, not a folder")
    result = invoke("data", "synth", "--out", target / "sub", "--classes", "2", "--train", "1", "--test", "1")
    assert_clean_exit(result, 1, f"--out {target / 'sub'}: {target} is a regular file, not a folder")
    assert target.read_text() == "keep me"
