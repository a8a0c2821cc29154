"""Bad inputs, third round (issue 26, docs/reliability.md, "Third round: answers"): no silent wrong answer.

Datasets in every layout where one image is two entries (a test image that is a byte copy or a link of a
training image, one file under two ids or two class folders) or two classes share a name; recipes with a
key given twice, a YAML boolean where a number belongs, or nesting that used to end in ``RecursionError``;
``data synth --aspect`` that printed the wrong size; ``profile`` sizes that fit each cap but not memory.
Each case checks the exit status, that no traceback escapes, and that the message names the file (and line)
or option concerned. The cases that need a trained run are in tests/test_bad_inputs_answers_run.py.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from bad_inputs import assert_clean_exit, deadline, invoke
from fake_datasets import make_fake_aircraft, make_fake_cars, make_fake_cub, make_fake_folder
from PIL import Image

from elope.data import AnnotationError, build_dataset, index_dataset, write_synthetic

CUB = "CUB_200_2011"
NFC, NFD = "caf\u00e9", "cafe\u0301"  # one name, two spellings (é as one code point, or e + accent)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new))


def _link(path: Path, target: Path) -> None:
    path.unlink()
    os.symlink(target, path)


def _cub_image(root: Path, c: int, k: int) -> Path:
    return root / CUB / "images" / f"{c:03d}.Class_{c}" / f"Class_{c}_{k:04d}.jpg"


def _aircraft(root: Path) -> Path:
    return root / "fgvc-aircraft-2013b" / "data"


def _aircraft_names(root: Path) -> None:  # 'A300B4' renamed 'cessna 172': 'Cessna 172' once more
    for path in _aircraft(root).glob("*.txt"):
        if path.name == "variants.txt" or path.name.startswith("images_variant_"):
            path.write_text(path.read_text().replace("A300B4", "cessna 172"))


def _cars_names(root: Path) -> None:
    names = np.array([["Make Model 1 2012", "Make Model 1 2012", "Make Model 3 2012"]], dtype=object)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})


def _synthetic(root: Path) -> Path:
    return write_synthetic(root, classes=2, train=2, test=1, size=32, seed=0)


def _synthetic_copy(root: Path) -> None:  # image 3, the test image of class 1, made a copy of image 1
    names = [line.split()[1] for line in (root / CUB / "images.txt").read_text().splitlines()]
    shutil.copyfile(root / CUB / "images" / names[0], root / CUB / "images" / names[2])


# layout -> (make the fake tree, dataset name for the commands)
LAYOUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "cub": (make_fake_cub, "cub"),
    "cars": (make_fake_cars, "cars"),
    "aircraft": (make_fake_aircraft, "aircraft"),
    "folder": (make_fake_folder, "folder"),
    "synthetic": (_synthetic, "synthetic"),
}
# case -> (layout, change to the tree, text of the problem, whether the readers (train, evaluate) refuse it
# too: one file under two entries and class names are in the list files; byte copies only `data check` reads)
CASES: dict[str, tuple[str, Callable[[Path], object], str, bool]] = {
    "cub: test image a byte copy of a training image": (
        "cub",
        lambda r: shutil.copyfile(_cub_image(r, 1, 1), _cub_image(r, 1, 5)),
        "Class_1_0005.jpg is a byte-for-byte copy of",
        False,
    ),
    "cub: test image a link to a training image": (
        "cub",
        lambda r: _link(_cub_image(r, 1, 5), _cub_image(r, 1, 1)),
        "are one file (a link): listed as a training image (id 1) and as a test image (id 5): a train/test leak",
        True,
    ),
    "cub: one image under two ids": (
        "cub",
        lambda r: _edit(
            r / CUB / "images.txt", "\n2 001.Class_1/Class_1_0002.jpg", "\n2 001.Class_1/Class_1_0001.jpg"
        ),
        "listed twice in train, as id 1 and as id 2 (images.txt line 1, images.txt line 2)",
        True,
    ),
    "cub: two classes of one name": (
        "cub",
        lambda r: _edit(r / CUB / "classes.txt", "3 003.Class_3", "3 001.Class_1"),
        "classes.txt: line 3: class '001.Class_1' has the name of class '001.Class_1' (classes.txt line 1)",
        True,
    ),
    "cars: test image a byte copy of a training image": (
        "cars",
        lambda r: shutil.copyfile(r / "cars_train" / "00001.jpg", r / "cars_test" / "00001.jpg"),
        "a train/test leak (cars_train_annos.mat annotation 1, cars_test_annos_withlabels.mat annotation 1)",
        False,
    ),
    "cars: test image a link to a training image": (
        "cars",
        lambda r: _link(r / "cars_test" / "00002.jpg", r / "cars_train" / "00001.jpg"),
        "are one file (a link): listed as a training image (id 00001.jpg) and as a test image",
        True,
    ),
    "cars: two classes of one name": (
        "cars",
        _cars_names,
        "class_names entry 2: class 'Make Model 1 2012' has the name of class",
        True,
    ),
    "aircraft: test image a byte copy of a training image": (
        "aircraft",
        lambda r: shutil.copyfile(_aircraft(r) / "images/0000001.jpg", _aircraft(r) / "images/0000021.jpg"),
        "0000021.jpg is a byte-for-byte copy of",
        False,
    ),
    "aircraft: one image in train and in val": (
        "aircraft",
        lambda r: _edit(_aircraft(r) / "images_variant_val.txt", "0000011 707-320", "0000001 707-320"),
        "listed in train (id 0000001) and in val (id 0000001)",
        True,
    ),
    "aircraft: two classes whose names differ only in case": (
        "aircraft",
        _aircraft_names,
        "variants.txt: line 5: class 'Cessna 172' has the name of class 'cessna 172' (variants.txt line 2; "
        "cessna 172 and Cessna 172)",
        True,
    ),
    "folder: test image a link to a training image": (
        "folder",
        lambda r: _link(r / "test" / "alpha" / "img_0.jpg", r / "train" / "alpha" / "img_0.jpg"),
        "are one file (a link): listed as a training image (id train/alpha/img_0.jpg) and as a test image",
        True,
    ),
    "folder: one picture in two class folders": (
        "folder",
        lambda r: _link(r / "train" / "beta" / "img_3.jpg", r / "train" / "alpha" / "img_0.jpg"),
        "of class 'alpha' and as id train/beta/img_3.jpg of class 'beta'",
        True,
    ),
    "folder: two class folders of one name in two spellings": (
        "folder",
        lambda r: shutil.rmtree(r) or make_fake_folder(r, classes=(NFC, NFD, "other")),
        f"class {NFC!r} has the name of class {NFD!r} ({NFD}; cafe\\u0301 and caf\\xe9): two classes",
        True,
    ),
    "synthetic: test image a byte copy of a training image": (
        "synthetic",
        _synthetic_copy,
        "_0003.jpg is a byte-for-byte copy of",
        False,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_one_image_twice_or_one_name_twice(case: str, tmp_path: Path) -> None:
    layout, change, needle, readers_refuse = CASES[case]
    make, name = LAYOUTS[layout]
    root = make(tmp_path / layout)
    change(root)
    result = invoke("data", "check", "--dataset", name, "--root", root)
    assert_clean_exit(result, 1, needle)
    if readers_refuse:  # what train and evaluate read: refused, from the index data check reports from
        assert any(needle in f"{p.path}: {p.problem}" for p in index_dataset(name, root).problems)
        with pytest.raises(AnnotationError, match="elope data check"):
            build_dataset(name, root, "test")


def test_the_layouts_hold_no_copy_to_start_with(tmp_path: Path) -> None:
    """The trees the cases change pass untouched (a failure here explains the cases')."""
    for layout, (make, name) in LAYOUTS.items():
        root = make(tmp_path / layout)
        assert_clean_exit(invoke("data", "check", "--dataset", name, "--root", root), 0, "no problems found")


def test_training_refuses_two_classes_of_one_name(tmp_path: Path) -> None:
    """What made `evaluate` report a mean per-class accuracy of 0.0 beside a top-1 of 33 % (its per-class
    table keyed by name merged the two classes), and `predict` show one name twice: never trained."""
    root = make_fake_cub(tmp_path / "cub")
    CASES["cub: two classes of one name"][1](root)
    result = invoke(
        "train", "--dataset", "cub", "--root", root, "--out", tmp_path / "out", "--backbone", "resnet18",
        "--no-pretrained", "--image-size", "40", "--epochs", "0", "--stages", "classifier",
    )  # fmt: skip
    assert_clean_exit(result, 1, "has the name of class '001.Class_1'", "elope data check")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- recipes
def _train_args(cub: Path, out: Path, *extra: str) -> list[str | Path]:
    return [
        "train", "--dataset", "cub", "--root", cub, "--out", out, "--backbone", "resnet18", "--no-pretrained",
        "--image-size", "40", "--epochs", "0", "--stages", "classifier", *extra,
    ]  # fmt: skip


RECIPES = {
    "a key given twice": (
        "loss:\n  lambda: 1.0\n  alpha: 0.5\n  lambda: 3.0\n",
        ("key 'lambda' is given twice in one mapping (line 2, column 3 and line 4, column 3)",),
    ),
    "a section given twice": (
        "loss:\n  lambda: 1.0\nmodel:\n  k: 4\nloss:\n  alpha: 0.5\n",
        ("key 'loss' is given twice in one mapping (line 1, column 1 and line 5, column 1)",),
    ),
    "lambda: yes": (
        "loss:\n  lambda: yes\n",
        ("config key 'loss.lambda': expected a number, got a boolean",),
    ),
    "epochs: on": (
        "stages:\n  classifier:\n    epochs: on\n",
        ("config key 'stages.classifier.epochs': expected a number, got a boolean",),
    ),
    "nested 100,000 deep": ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", ("nests deeper than 32 levels",)),
}


@pytest.mark.parametrize("case", RECIPES)
def test_recipe_files_that_said_something_else(case: str, tmp_path: Path) -> None:
    text, needles = RECIPES[case]
    config = tmp_path / "recipe.yaml"
    config.write_text(text)
    cub = make_fake_cub(tmp_path / "cub")
    with deadline(60):
        result = invoke(*_train_args(cub, tmp_path / "out", "--config", config))
    where = () if "boolean" in needles[0] else (str(config),)  # the schema names the key; YAML the file
    assert_clean_exit(result, 1, *where, *needles)
    assert not (tmp_path / "out").exists()


SET_VALUES = {
    "loss.lambda=on": "config key 'loss.lambda': expected a number, got a boolean",
    "dataset.options.max_pixels=yes": "options.max_pixels: expected a number, got a boolean",
    "dataset.synthetic.object_scale=[yes, 0.5]": "'dataset.synthetic.object_scale.0': expected a number",
    "loss={lambda: 1, lambda: 2}": "override 'loss': key 'lambda' is given twice",
    "loss.lambda=" + "[" * 5000 + "]" * 5000: "override 'loss.lambda': the YAML nests deeper than 32 levels",
}


@pytest.mark.parametrize("value", SET_VALUES, ids=lambda v: v[:48])
def test_set_values_that_said_something_else(value: str, tmp_path: Path) -> None:
    cub = make_fake_cub(tmp_path / "cub")
    with deadline(60):
        result = invoke(*_train_args(cub, tmp_path / "out", "--set", value))
    assert_clean_exit(result, 1, SET_VALUES[value])
    assert not (tmp_path / "out").exists()


def test_yaml_merge_keys_still_override() -> None:
    """``<<: *base`` then a key of the base: YAML's own override, not a key given twice."""
    from elope.config.files import load_yaml

    assert load_yaml("base: &b {lr: 1, lr_step: 3}\nstage:\n  <<: *b\n  lr: 2\n")["stage"] == {
        "lr": 2,
        "lr_step": 3,
    }


# ------------------------------------------------------------------------------------------- data synth
def test_synth_aspect_prints_the_size_it_writes_and_refuses_a_sliver(tmp_path: Path) -> None:
    out = tmp_path / "wide"
    result = invoke("data", "synth", "--out", out, "--classes", "2", "--train", "2", "--test", "1",
                    "--size", "128", "--aspect", "4")  # fmt: skip
    assert_clean_exit(result, 0, "128x32 px")
    image = next((out / CUB / "images").rglob("*.jpg"))
    assert Image.open(image).size == (128, 32)

    result = invoke("data", "synth", "--out", tmp_path / "sliver", "--size", "32", "--aspect", "4")
    assert_clean_exit(result, 1, "size 32 at aspect 4 makes 32x8 images", "use size >= 127")
    assert not (tmp_path / "sliver" / CUB).exists()


def test_recipe_aspect_is_checked_before_the_run(tmp_path: Path) -> None:
    result = invoke(
        "train", "--dataset", "synthetic", "--out", tmp_path / "out", "--backbone", "resnet18",
        "--no-pretrained", "--epochs", "0", "--set", "dataset.synthetic.size=64",
        "--set", "dataset.synthetic.aspect=0.25",
    )  # fmt: skip
    assert_clean_exit(result, 1, "dataset.synthetic: size 64 at aspect 0.25 makes 16x64 images")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- profile
def _address_space(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_profile_refuses_a_model_too_big_for_memory_before_allocating(tmp_path: Path) -> None:
    """50,000 classes and a 65,536-wide embedding are each within their cap, and 13 GB together. Run in a
    process limited to 6 GB of address space, so that code allocating them fails at once (instead of
    using the machine's memory)."""
    result = subprocess.run(
        [sys.executable, "-m", "elope", "profile", "--num-classes", "50000", "--embedding-dim", "65536"],
        capture_output=True, text=True, timeout=300, preexec_fn=_address_space(6 * 2**30),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "--num-classes 50000 with --embedding-dim 65536 makes 3.56 billion parameters" in result.stderr
    assert "13.3 GiB" in result.stderr and "limit of 4 GiB" in result.stderr
