"""CUB-200-2011 reader: splits, labels, box conversion, transforms, bad input, unreadable images."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from fake_datasets import CLASS_COLOURS, make_fake_cub, write_image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from elope.data import (
    CUB200,
    AnnotationError,
    DatasetNotFoundError,
    ImageLoadError,
    build_dataset,
    eval_transform,
)


def _colour_label(image: torch.Tensor) -> int:
    """The class whose colour a solid fake image has."""
    mean = image.float().mean(dim=(1, 2))
    return min(
        range(len(CLASS_COLOURS)), key=lambda c: float(((mean - torch.tensor(CLASS_COLOURS[c])) ** 2).sum())
    )


def test_splits_and_labels(fake_cub: Path) -> None:
    trainval = CUB200(fake_cub, "trainval")
    test = CUB200(fake_cub, "test")
    assert len(trainval) == 12 and len(test) == 6
    assert trainval.targets == [0] * 4 + [1] * 4 + [2] * 4  # class ids 1..3 -> labels 0..2
    assert test.targets == [0, 0, 1, 1, 2, 2]
    assert trainval.classes == ["001.Class_1", "002.Class_2", "003.Class_3"]
    assert trainval.class_to_idx["002.Class_2"] == 1
    assert trainval.samples[4][0].endswith("CUB_200_2011/images/002.Class_2/Class_2_0001.jpg")
    assert trainval.has_boxes and trainval.num_classes == 3


def test_root_may_be_the_cub_folder_itself(fake_cub: Path) -> None:
    a = CUB200(fake_cub, "test")
    b = CUB200(fake_cub / "CUB_200_2011", "test")
    assert a.samples == b.samples


def test_item_image_label_and_box_conversion(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "trainval")
    image, label, box = dataset[4]  # image id 7: first image of class 2
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 48)
    assert label == 1 and _colour_label(image) == 1
    # bounding_boxes.txt: "7 7.0 2.5 10.0 6.25" (x y width height) -> x1 y1 x2 y2
    assert box.dtype == torch.float32
    assert box.tolist() == [7.0, 2.5, 17.0, 8.75]


def test_carved_validation_split_is_stratified_disjoint_and_seeded(fake_cub: Path) -> None:
    train = CUB200(fake_cub, "train", val_fraction=0.25)
    val = CUB200(fake_cub, "val", val_fraction=0.25)
    assert len(train) == 9 and len(val) == 3
    assert sorted(val.targets) == [0, 1, 2]  # one per class
    train_paths = {p for p, _ in train.samples}
    val_paths = {p for p, _ in val.samples}
    assert not train_paths & val_paths
    assert train_paths | val_paths == {p for p, _ in CUB200(fake_cub, "trainval").samples}
    assert CUB200(fake_cub, "val", val_fraction=0.25).samples == val.samples
    other_seeds = {tuple(CUB200(fake_cub, "val", val_fraction=0.25, seed=s).samples) for s in range(1, 8)}
    assert len(other_seeds | {tuple(val.samples)}) > 1
    test_paths = {p for p, _ in CUB200(fake_cub, "test").samples}
    assert not test_paths & (train_paths | val_paths)


def test_default_split_is_ten_percent(tmp_path: Path) -> None:
    root = make_fake_cub(tmp_path, num_classes=2, train_per_class=20, test_per_class=1)
    assert len(build_dataset("cub", root, "val")) == 4
    assert len(build_dataset("cub", root, "train")) == 36


def test_transform_moves_box_with_image(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "trainval", eval_transform(64))
    image, _, box = dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and type(image) is torch.Tensor
    # box (1, 2.5, 11, 8.75) in a 48x32 image, resized to 64x64
    torch.testing.assert_close(box, torch.tensor([1 * 64 / 48, 2.5 * 2, 11 * 64 / 48, 8.75 * 2]))
    flipped = CUB200(fake_cub, "trainval", v2.RandomHorizontalFlip(p=1.0))
    _, _, fbox = flipped[0]
    assert fbox.tolist() == [48 - 11, 2.5, 48 - 1, 8.75]


def test_without_bounding_boxes_file_boxes_are_nan(tmp_path: Path) -> None:
    root = make_fake_cub(tmp_path, boxes=False)
    dataset = CUB200(root, "test", eval_transform(32))
    _, _, box = dataset[0]
    assert not dataset.has_boxes and box.shape == (4,) and all(math.isnan(v) for v in box.tolist())


def test_draft_decoding_scales_the_box(tmp_path: Path) -> None:
    root = make_fake_cub(tmp_path, num_classes=2, train_per_class=2, test_per_class=1, image_size=(400, 320))
    full = CUB200(root, "test")
    image, _, box = full[0]
    assert image.shape == (3, 320, 400)
    draft = CUB200(root, "test", decode_size=100)
    image, _, dbox = draft[0]
    assert image.shape == (3, 160, 200)  # 1/2 keeps both sides >= 100, 1/4 would not
    torch.testing.assert_close(dbox, box / 2)


def test_malformed_line_names_file_and_line(fake_cub: Path) -> None:
    path = fake_cub / "CUB_200_2011" / "images.txt"
    lines = path.read_text().splitlines()
    lines[2] = "3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"images\.txt: line 3: expected 2 fields"):
        CUB200(fake_cub, "train")


def test_non_numeric_box_is_malformed(fake_cub: Path) -> None:
    path = fake_cub / "CUB_200_2011" / "bounding_boxes.txt"
    path.write_text(path.read_text().replace("5 5.0 2.5", "5 five 2.5"))
    with pytest.raises(AnnotationError, match=r"bounding_boxes\.txt: line 5: expected '<image_id> <x> <y>"):
        CUB200(fake_cub, "test")


def test_label_out_of_range(fake_cub: Path) -> None:
    path = fake_cub / "CUB_200_2011" / "image_class_labels.txt"
    path.write_text(path.read_text().replace("\n2 1\n", "\n2 9\n"))
    with pytest.raises(AnnotationError, match=r"line 2: class id 9 is out of range"):
        CUB200(fake_cub, "train")


def test_missing_dataset_says_what_is_expected_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"expected .*CUB_200_2011/images\.txt"):
        build_dataset("cub", tmp_path, "train")
    make_fake_cub(tmp_path)
    (tmp_path / "CUB_200_2011" / "classes.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"classes\.txt"):
        build_dataset("cub", tmp_path, "train")


def test_build_dataset_rejects_unknown_names_splits_and_options(fake_cub: Path) -> None:
    with pytest.raises(ValueError, match="cub, cars, aircraft, folder, synthetic"):
        build_dataset("birds", fake_cub, "train")
    with pytest.raises(ValueError, match="train, val, test, trainval"):
        build_dataset("cub", fake_cub, "validation")
    with pytest.raises(ValueError, match="unknown option"):
        build_dataset("cub", fake_cub, "train", annotation_level="variant")
    with pytest.raises(ValueError, match="val_fraction"):
        build_dataset("cub", fake_cub, "val", val_fraction=1.5)


def _break(path: str) -> None:
    Path(path).write_bytes(Path(path).read_bytes()[:100])  # truncated JPEG


def test_unreadable_image_raises_with_its_path(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "test")
    _break(dataset.samples[1][0])
    with pytest.raises(ImageLoadError, match=re.escape(dataset.samples[1][0])):
        dataset[1]


def test_skip_unreadable_replaces_with_next_readable_and_counts(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "test", skip_unreadable=True)
    _break(dataset.samples[1][0])  # a class-1 image; the next one (index 2) is class 2
    image, label, _ = dataset[1]
    assert label == dataset.targets[2] == 1 and _colour_label(image) == 1  # never a wrong label
    assert dataset.skipped == 1 and dataset.skipped_paths == [dataset.samples[1][0]]


def test_skip_count_crosses_dataloader_workers(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "test", eval_transform(16), skip_unreadable=True)
    _break(dataset.samples[0][0])
    Path(dataset.samples[3][0]).unlink()
    loader = DataLoader(dataset, batch_size=3, num_workers=1)
    labels = torch.cat([batch[1] for batch in loader])
    assert len(labels) == 6 and dataset.skipped == 2
    assert sorted(dataset.skipped_paths) == sorted([dataset.samples[0][0], dataset.samples[3][0]])


def test_worker_error_reaches_main_process_with_path(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "test", eval_transform(16))
    Path(dataset.samples[2][0]).unlink()
    loader = iter(DataLoader(dataset, batch_size=2, num_workers=1))
    with pytest.raises(ImageLoadError, match=r"image file not found: .*Class_2_0005\.jpg"):
        list(loader)
    loader._shutdown_workers()  # now, rather than when pytest lets go of the traceback


def test_decompression_bomb_is_refused(fake_cub: Path) -> None:
    dataset = CUB200(fake_cub, "test", max_pixels=1000)  # images are 48x32 = 1536 pixels
    with pytest.raises(ImageLoadError, match=r"refused to decode .*1536 pixels"):
        dataset[0]


def test_synthetic_name_reads_the_cub_layout(synthetic_root: Path) -> None:
    dataset = build_dataset("synthetic", synthetic_root, "test")
    assert len(dataset) == 6 and dataset.has_boxes and dataset.num_classes == 3


def test_other_formats_decode_through_pil(tmp_path: Path) -> None:
    root = make_fake_cub(tmp_path, num_classes=2, train_per_class=1, test_per_class=1)
    dataset = CUB200(root, "test")
    png = Path(dataset.samples[0][0])
    write_image(png, (48, 32), CLASS_COLOURS[0])
    from PIL import Image

    Image.open(png).convert("L").save(png, format="PNG")  # grayscale PNG under a .jpg name
    image, _, _ = dataset[0]
    assert image.shape == (3, 32, 48)
