"""Class-folder reader: classes from train/, optional val/, no boxes, guarded labels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fake_datasets import make_fake_folder

from elope.data import AnnotationError, DatasetNotFoundError, ImageFolderDataset, build_dataset


def test_classes_counts_and_no_boxes(fake_folder: Path) -> None:
    train = ImageFolderDataset(fake_folder, "trainval")
    assert train.classes == ["alpha", "beta", "gamma"] and len(train) == 12
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4
    assert len(ImageFolderDataset(fake_folder, "test")) == 6
    _, _, box = train[0]
    assert not train.has_boxes and all(math.isnan(v) for v in box.tolist())


def test_validation_carved_without_val_folder(fake_folder: Path) -> None:
    val = build_dataset("folder", fake_folder, "val", val_fraction=0.25)
    train = build_dataset("folder", fake_folder, "train", val_fraction=0.25)
    assert len(val) == 3 and len(train) == 9 and sorted(val.targets) == [0, 1, 2]


def test_val_folder_is_the_validation_split(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path, counts={"train": 3, "val": 1, "test": 2})
    val = ImageFolderDataset(root, "val")
    assert len(val) == 3 and all("/val/" in p for p, _ in val.samples)
    assert len(ImageFolderDataset(root, "train")) == 9
    assert len(ImageFolderDataset(root, "trainval")) == 12


def test_hidden_and_non_image_files_are_ignored(fake_folder: Path) -> None:
    (fake_folder / "train" / "alpha" / "notes.txt").write_text("x")
    (fake_folder / "train" / "alpha" / ".hidden.jpg").write_bytes(b"x")
    (fake_folder / "train" / ".cache").mkdir()
    nested = fake_folder / "train" / "beta" / "more"
    nested.mkdir()
    (nested / "x.JPG").write_bytes((fake_folder / "train" / "beta" / "img_0.jpg").read_bytes())
    dataset = ImageFolderDataset(fake_folder, "trainval")
    assert dataset.classes == ["alpha", "beta", "gamma"] and len(dataset) == 13
    assert dataset.targets.count(1) == 5


def test_test_class_missing_from_train_is_an_error(fake_folder: Path) -> None:
    make_fake_folder(fake_folder, classes=("delta",), counts={"test": 1})
    with pytest.raises(AnnotationError, match="class folder 'delta' is not in"):
        ImageFolderDataset(fake_folder, "test")


def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"expected the folder .*/train"):
        ImageFolderDataset(tmp_path, "train")
    make_fake_folder(tmp_path, counts={"train": 1})
    with pytest.raises(DatasetNotFoundError, match=r"expected the folder .*/test"):
        ImageFolderDataset(tmp_path, "train")
