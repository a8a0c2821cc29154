"""Stanford Cars devkit reader: .mat parsing (uint8/uint16 fields), 1-based boxes and classes, layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from fake_datasets import make_fake_cars

from elope.data import AnnotationError, DatasetNotFoundError, StanfordCars, build_dataset


def test_splits_classes_and_labels(fake_cars: Path) -> None:
    train = StanfordCars(fake_cars, "trainval")
    test = StanfordCars(fake_cars, "test")
    assert len(train) == 12 and len(test) == 6
    assert train.classes == ["Make Model 1 2012", "Make Model 2 2012", "Make Model 3 2012"]
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4  # class 1..3 -> 0..2
    assert test.targets == [0, 0, 1, 1, 2, 2]
    assert train.samples[0][0].endswith("cars_train/00001.jpg")
    assert test.samples[5][0].endswith("cars_test/00006.jpg")


def test_one_based_inclusive_boxes_become_pixel_edges(fake_cars: Path) -> None:
    test = StanfordCars(fake_cars, "test")
    image, label, box = test[2]  # annotation 3: bbox 3, 2, 23, 30 (uint8 / uint16 in the .mat)
    assert image.shape == (3, 40, 60) and label == 1
    assert box.tolist() == [2.0, 1.0, 23.0, 30.0]


def test_root_may_hold_stanford_cars(tmp_path: Path) -> None:
    make_fake_cars(tmp_path / "stanford_cars")
    assert len(build_dataset("cars", tmp_path, "test")) == 6


def test_test_labels_accepted_in_devkit(fake_cars: Path) -> None:
    shutil.move(fake_cars / "cars_test_annos_withlabels.mat", fake_cars / "devkit")
    assert StanfordCars(fake_cars, "test").targets == [0, 0, 1, 1, 2, 2]


def test_missing_test_labels_explains_where_they_live(fake_cars: Path) -> None:
    (fake_cars / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"cars_test_annos_withlabels\.mat.*no labels"):
        StanfordCars(fake_cars, "train")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"expected .*devkit/cars_meta\.mat"):
        StanfordCars(tmp_path, "train")


def test_broken_mat_file(fake_cars: Path) -> None:
    (fake_cars / "devkit" / "cars_train_annos.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetNotFoundError, match=r"cannot read .*cars_train_annos\.mat"):
        StanfordCars(fake_cars, "train")


def _rewrite(path: Path, edit) -> None:
    annotations = scipy.io.loadmat(path)["annotations"]
    edit(annotations)
    scipy.io.savemat(path, {"annotations": annotations})


def test_class_out_of_range_names_the_annotation(fake_cars: Path) -> None:
    path = fake_cars / "devkit" / "cars_train_annos.mat"

    def edit(annotations):
        annotations[0, 2]["class"] = np.array([[200]], dtype=np.uint8)

    _rewrite(path, edit)
    with pytest.raises(AnnotationError, match=r"annotation 3 \(00003\.jpg\): class 200 is out of range"):
        StanfordCars(fake_cars, "train")


def test_missing_field_is_reported(fake_cars: Path) -> None:
    path = fake_cars / "cars_test_annos_withlabels.mat"
    annotations = scipy.io.loadmat(fake_cars / "devkit" / "cars_test_annos.mat")["annotations"]
    scipy.io.savemat(path, {"annotations": annotations})  # the unlabelled file under the labelled name
    with pytest.raises(DatasetNotFoundError, match="lacks the field"):
        StanfordCars(fake_cars, "test")


def test_single_annotation_file(tmp_path: Path) -> None:
    root = make_fake_cars(tmp_path, num_classes=2, train_per_class=2, test_per_class=1)
    path = root / "cars_test_annos_withlabels.mat"
    annotations = scipy.io.loadmat(path)["annotations"]
    scipy.io.savemat(path, {"annotations": annotations[:, :1]})  # squeeze_me gives a 0-d struct
    test = StanfordCars(root, "test")
    assert len(test) == 1 and test[0][2].tolist() == [0.0, 1.0, 21.0, 30.0]


def test_validation_is_carved_from_train(fake_cars: Path) -> None:
    val = StanfordCars(fake_cars, "val", val_fraction=0.25)
    train = StanfordCars(fake_cars, "train", val_fraction=0.25)
    assert sorted(val.targets) == [0, 1, 2] and len(train) == 9
    assert all("cars_train" in p for p, _ in val.samples)
    assert torch.isfinite(val[0][2]).all()
