"""The procedural fine-grained set: layout, determinism, boxes, class design, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from elope.data import build_dataset, check_dataset, write_synthetic
from elope.data.cli import data
from elope.data.synthetic import MAX_CLASSES, synthetic_classes


def _digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha.update(str(path.relative_to(root)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def test_layout_counts_and_metadata(synthetic_root: Path) -> None:
    report = check_dataset("synthetic", synthetic_root)
    assert report.ok, report.problems
    assert report.num_classes == 3
    assert report.splits == {"train": {"images": 12, "boxes": 12}, "test": {"images": 6, "boxes": 6}}
    meta = json.loads((synthetic_root / "elope_synthetic.json").read_text())
    assert meta["args"] == {"classes": 3, "train": 4, "test": 2, "size": 48, "seed": 0}
    dataset = build_dataset("synthetic", synthetic_root, "test")
    assert dataset.classes[0] == "001." + meta["classes"][0]["name"]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, synthetic_root: Path) -> None:
    again = write_synthetic(tmp_path / "again", classes=3, train=4, test=2, size=48, seed=0)
    other = write_synthetic(tmp_path / "other", classes=3, train=4, test=2, size=48, seed=1)
    assert _digest(again) == _digest(synthetic_root)
    assert _digest(other) != _digest(synthetic_root)


def test_boxes_are_exact_object_extents(synthetic_root: Path) -> None:
    dataset = build_dataset("synthetic", synthetic_root, "trainval")
    for i in range(len(dataset)):
        _, _, box = dataset[i]
        x1, y1, x2, y2 = box.tolist()
        assert 0 <= x1 < x2 <= 48 and 0 <= y1 < y2 <= 48
        assert all(float(v).is_integer() for v in (x1, y1, x2, y2))  # whole pixels
        assert 0.30 * 48 - 1 <= x2 - x1 <= 0.60 * 48 + 2  # 30-60 % of the width (+ edge pixels)
        assert (x2 - x1) * (y2 - y1) < 0.5 * 48 * 48  # never fills the frame: cropping matters


def test_object_pixels_lie_inside_the_box(tmp_path: Path) -> None:
    # Render the same image with and without the critter: every changed pixel lies inside the box.
    from elope.data import synthetic

    spec = synthetic_classes(3, 0)[0]
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    background = synthetic._background(64, rng_a)
    _, mark = synthetic._critter(64, spec, rng_a)
    image, box = synthetic._render(64, spec, rng_b)
    synthetic._decoys(background, rng_a, mark)
    diff = np.any(np.asarray(image) != np.asarray(background), axis=2)
    ys, xs = np.nonzero(diff)
    x1, y1, x2, y2 = box
    assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
    assert xs.min() <= x1 + 1 and xs.max() >= x2 - 2 and ys.max() >= y2 - 2  # the box is tight


def test_classes_share_parts_and_differ_in_combinations() -> None:
    specs = synthetic_classes(10, 0)
    assert len({(s.head, s.wing, s.tail) for s in specs}) == 10
    assert len({s.head for s in specs}) < 10 and len({s.wing for s in specs}) < 10  # parts are shared
    assert synthetic_classes(10, 0) == specs and synthetic_classes(10, 1) != specs
    with pytest.raises(ValueError, match=str(MAX_CLASSES)):
        synthetic_classes(MAX_CLASSES + 1)


def test_refuses_to_overwrite_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "CUB_200_2011").mkdir()
    with pytest.raises(FileExistsError, match="not written by elope"):
        write_synthetic(tmp_path, classes=2, train=1, test=1, size=32, overwrite=True)


def test_cli_synth_and_force(tmp_path: Path) -> None:
    args = ["synth", "--out", str(tmp_path), "--classes", "2", "--train", "2", "--test", "1", "--size", "32"]
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 0, result.output
    assert "wrote 6 images" in result.output and str(tmp_path / "CUB_200_2011") in result.output
    again = CliRunner().invoke(data, args)
    assert again.exit_code != 0 and "--force" in again.output
    assert CliRunner().invoke(data, [*args, "--force", "--seed", "3"]).exit_code == 0
    assert json.loads((tmp_path / "elope_synthetic.json").read_text())["args"]["seed"] == 3
    assert len(list((tmp_path / "CUB_200_2011" / "images").rglob("*.jpg"))) == 6
