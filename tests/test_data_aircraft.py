"""FGVC-Aircraft reader: own splits, annotation levels, string ids, box convention, banner crop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fake_datasets import AIRCRAFT_MANUFACTURERS, AIRCRAFT_VARIANTS, BANNER_COLOUR, CLASS_COLOURS

from elope.data import AnnotationError, DatasetNotFoundError, FGVCAircraft, build_dataset, eval_transform


def test_own_splits(fake_aircraft: Path) -> None:
    sizes = {split: len(FGVCAircraft(fake_aircraft, split)) for split in ("train", "val", "trainval", "test")}
    assert sizes == {"train": 10, "val": 10, "trainval": 20, "test": 10}
    val = FGVCAircraft(fake_aircraft, "val", val_fraction=0.5, seed=3)  # shipped split: options unused
    assert [Path(p).name for p, _ in val.samples][:2] == ["0000011.jpg", "0000012.jpg"]


def test_variant_classes_keep_spaces_and_slashes(fake_aircraft: Path) -> None:
    dataset = FGVCAircraft(fake_aircraft, "test")
    assert dataset.classes == AIRCRAFT_VARIANTS
    assert dataset.class_to_idx["F/A-18"] == 2 and dataset.class_to_idx["Cessna 172"] == 4
    assert dataset.targets == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_annotation_levels(fake_aircraft: Path) -> None:
    manufacturer = FGVCAircraft(fake_aircraft, "test", annotation_level="manufacturer")
    assert manufacturer.classes == AIRCRAFT_MANUFACTURERS
    # F/A-18 and DC-9-30 are both McDonnell Douglas
    assert manufacturer.targets == [0, 0, 1, 1, 2, 2, 2, 2, 3, 3]
    family = build_dataset("aircraft", fake_aircraft, "trainval", annotation_level="family")
    assert family.classes[0] == "Boeing 707" and len(family) == 20
    with pytest.raises(ValueError, match="variant, family, manufacturer"):
        FGVCAircraft(fake_aircraft, "test", annotation_level="model")


def test_ids_are_strings_with_leading_zeros(fake_aircraft: Path) -> None:
    dataset = FGVCAircraft(fake_aircraft, "train")
    assert dataset.samples[0][0].endswith("fgvc-aircraft-2013b/data/images/0000001.jpg")


def test_banner_is_removed_and_box_clamped(fake_aircraft: Path) -> None:
    dataset = FGVCAircraft(fake_aircraft, "test")
    image, label, box = dataset[3]  # image j = 23: box line "0000024 24 3 54 60"
    assert image.shape == (3, 40, 72)  # 60 - 20 rows
    bottom = image[:, -1].float().mean(dim=1)
    assert torch.allclose(bottom, torch.tensor(CLASS_COLOURS[label], dtype=torch.float32), atol=12)
    assert box.tolist() == [23.0, 2.0, 54.0, 40.0]  # ymax 60 clamped to the 40 remaining rows


def test_banner_kept_on_request(fake_aircraft: Path) -> None:
    image, _, box = FGVCAircraft(fake_aircraft, "test", remove_banner=False)[3]
    assert image.shape == (3, 60, 72)
    assert torch.allclose(
        image[:, -1].float().mean(dim=1), torch.tensor(BANNER_COLOUR, dtype=torch.float32), atol=5
    )
    assert box.tolist() == [23.0, 2.0, 54.0, 60.0]


def test_banner_and_transform(fake_aircraft: Path) -> None:
    image, _, box = FGVCAircraft(fake_aircraft, "test", eval_transform(36))[3]
    assert image.shape == (3, 36, 36)
    torch.testing.assert_close(box, torch.tensor([23 / 2, 2 * 36 / 40, 54 / 2, 36.0]))


def test_unknown_class_name_names_file_and_line(fake_aircraft: Path) -> None:
    path = fake_aircraft / "fgvc-aircraft-2013b" / "data" / "images_variant_val.txt"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].split(" ")[0] + " Concorde"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        AnnotationError, match=r"images_variant_val\.txt: line 2: class 'Concorde' is not in variants"
    ):
        FGVCAircraft(fake_aircraft, "train")


def test_missing_box_line(fake_aircraft: Path) -> None:
    path = fake_aircraft / "fgvc-aircraft-2013b" / "data" / "images_box.txt"
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(AnnotationError, match=r"line 1: image 0000001 is not in images_box\.txt"):
        FGVCAircraft(fake_aircraft, "train")


def test_root_variants_and_missing_dataset(fake_aircraft: Path, tmp_path: Path) -> None:
    inner = fake_aircraft / "fgvc-aircraft-2013b"
    assert len(FGVCAircraft(inner, "test")) == len(FGVCAircraft(inner / "data", "test")) == 10
    with pytest.raises(DatasetNotFoundError, match=r"expected .*fgvc-aircraft-2013b/data/variants\.txt"):
        FGVCAircraft(tmp_path / "empty", "test")
    (inner / "data" / "images_variant_test.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"images_variant_test\.txt"):
        FGVCAircraft(fake_aircraft, "test")


def test_trainval_optional_derived_from_train_and_val(fake_aircraft: Path) -> None:
    (fake_aircraft / "fgvc-aircraft-2013b" / "data" / "images_variant_trainval.txt").unlink()
    assert len(FGVCAircraft(fake_aircraft, "trainval")) == 20
