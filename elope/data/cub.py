"""CUB-200-2011 (Wah et al. 2011; Table 1: 5994 train / 5794 test images, 200 classes), read from its
own files.

Layout (as in ``CUB_200_2011.tgz``)::

    CUB_200_2011/images.txt              <image_id> <image_name>
    CUB_200_2011/image_class_labels.txt  <image_id> <class_id>          (1-based class ids)
    CUB_200_2011/train_test_split.txt    <image_id> <is_training_image> (1 train, 0 test)
    CUB_200_2011/classes.txt             <class_id> <class_name>
    CUB_200_2011/bounding_boxes.txt      <image_id> <x> <y> <width> <height>  (optional)
    CUB_200_2011/images/<image_name>

Box convention: x, y are the top-left corner in pixel-edge coordinates, so x1 = x, y1 = y,
x2 = x + width, y2 = y + height. Labels are ``class_id - 1`` (class ids ordered as in classes.txt by id).
The procedural set written by :func:`elope.data.synthetic.write_synthetic` uses this layout too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record, inside_root, keyed_rows, read_rows, require_file
from .base import FGVCDataset
from .errors import DatasetNotFoundError

__all__ = ["CUB200", "find_cub_root", "index_cub"]

NAME = "CUB-200-2011"


def find_cub_root(root: str | Path) -> Path:
    """The ``CUB_200_2011`` folder: ``root/CUB_200_2011`` or ``root`` itself."""
    root = Path(root).expanduser()
    for candidate in (root / "CUB_200_2011", root):
        if (candidate / "images.txt").is_file():
            return candidate
    raise DatasetNotFoundError(
        f"{NAME} not found: expected {root / 'CUB_200_2011' / 'images.txt'} (root = the folder holding "
        f"CUB_200_2011/, as extracted from CUB_200_2011.tgz) or {root / 'images.txt'} (root = CUB_200_2011/ "
        "itself). Write a small set in this layout with `elope data synth --out DIR`.",
        str(root),
    )


def _relation(
    name: str,
    table: dict[Any, Any],
    images: dict[Any, Any],
    path: Path,
    images_path: Path,
    problems: list[Problem],
) -> None:
    """Report ids present in ``images.txt`` but not in ``table`` (file ``path``), and the reverse."""
    for image_id, (number, _) in table.items():
        if image_id not in images:
            problems.append(Problem(str(path), f"line {number}: image id {image_id} is not in images.txt"))
    for image_id, (number, _) in images.items():
        if image_id not in table:
            problems.append(
                Problem(str(images_path), f"line {number}: image id {image_id} has no line in {name}")
            )


_IMAGE_TABLES = {
    "images.txt": [("image_id", int), ("image_name", str)],
    "image_class_labels.txt": [("image_id", int), ("class_id", int)],
    "train_test_split.txt": [("image_id", int), ("is_training_image", int)],
}
_BOX_COLUMNS = [("image_id", int), ("x", float), ("y", float), ("width", float), ("height", float)]


def _read_classes(
    path: Path, problems: list[Problem]
) -> tuple[list[str], dict[int, int], list[tuple[str, str]]]:
    """Class names in id order, ``class_id -> label`` and where each class is named, from ``classes.txt``."""
    class_rows = keyed_rows(
        path, read_rows(path, [("class_id", int), ("class_name", str)], problems, rest=True), problems
    )
    class_ids = sorted(class_rows)
    if class_ids != list(range(1, len(class_ids) + 1)):
        problems.append(Problem(str(path), f"class ids must be 1..{len(class_ids)} without gaps"))
    return (
        [class_rows[i][1][0] for i in class_ids],
        {class_id: i for i, class_id in enumerate(class_ids)},
        [(str(path), f"line {class_rows[i][0]}") for i in class_ids],
    )


def _check_values(
    files: dict[str, Path],
    tables: dict[str, dict[Any, Any]],
    class_index: dict[int, int],
    problems: list[Problem],
) -> None:
    """Report class ids outside ``classes.txt`` and split flags other than 0 or 1."""
    for number, (class_id,) in tables["image_class_labels.txt"].values():
        if class_id not in class_index:
            problems.append(
                Problem(
                    str(files["image_class_labels.txt"]),
                    f"line {number}: class id {class_id} is out of range (classes.txt has ids "
                    f"1..{len(class_index)})",
                )
            )
    for number, (flag,) in tables["train_test_split.txt"].values():
        if flag not in (0, 1):
            problems.append(
                Problem(
                    str(files["train_test_split.txt"]),
                    f"line {number}: is_training_image must be 0 or 1, got {flag}",
                )
            )


def _check_boxes(box_path: Path, boxes: dict[Any, Any], problems: list[Problem]) -> None:
    """Report boxes without a positive width and height."""
    for image_id, (number, (_, _, width, height)) in boxes.items():
        if not (width > 0 and height > 0):
            problems.append(
                Problem(
                    str(box_path),
                    f"line {number}: box of image {image_id} has width {width} and height {height}; both must be > 0",
                )
            )


def _split_records(
    base: Path,
    images_path: Path,
    tables: dict[str, dict[Any, Any]],
    boxes: dict[Any, Any],
    class_index: dict[int, int],
    problems: list[Problem],
) -> dict[str, list[Record]]:
    """The records of the images that have a label and a split, sorted into ``train`` and ``test``."""
    labels, is_train = tables["image_class_labels.txt"], tables["train_test_split.txt"]
    splits: dict[str, list[Record]] = {"train": [], "test": []}
    for image_id, (number, (image_name,)) in tables["images.txt"].items():
        path = inside_root(base / "images", image_name, images_path, f"line {number}", problems)
        if path is None or image_id not in labels or image_id not in is_train:
            continue
        class_id = labels[image_id][1][0]
        if class_id not in class_index:
            continue
        box = None
        if image_id in boxes:
            x, y, width, height = boxes[image_id][1]
            box = (x, y, x + width, y + height)
        record = Record(path, class_index[class_id], box, str(image_id), str(images_path), f"line {number}")
        splits["train" if is_train[image_id][1][0] == 1 else "test"].append(record)
    return splits


def index_cub(root: str | Path) -> DatasetIndex:
    """Read the annotation files of CUB-200-2011 into a :class:`DatasetIndex` (no image is opened)."""
    base = find_cub_root(root)
    problems: list[Problem] = []
    files = {
        name: require_file(base / name, NAME, f"the annotation file {name}")
        for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    }
    classes, class_index, class_sources = _read_classes(files["classes.txt"], problems)
    tables = {
        name: keyed_rows(files[name], read_rows(files[name], columns, problems), problems)
        for name, columns in _IMAGE_TABLES.items()
    }
    box_path = base / "bounding_boxes.txt"
    has_boxes = box_path.is_file()
    boxes: dict[Any, Any] = {}
    if has_boxes:
        boxes = keyed_rows(box_path, read_rows(box_path, _BOX_COLUMNS, problems), problems)

    _check_values(files, tables, class_index, problems)
    _check_boxes(box_path, boxes, problems)
    for name in ("image_class_labels.txt", "train_test_split.txt"):
        _relation(name, tables[name], tables["images.txt"], files[name], files["images.txt"], problems)
    if has_boxes:
        _relation("bounding_boxes.txt", boxes, tables["images.txt"], box_path, files["images.txt"], problems)
    splits = _split_records(base, files["images.txt"], tables, boxes, class_index, problems)
    return DatasetIndex("cub", base, classes, splits, has_boxes, problems, class_sources=class_sources)


class CUB200(FGVCDataset):
    """CUB-200-2011 as its authors distribute it.

    Args:
        root: the folder holding ``CUB_200_2011/``, or that folder itself.
        split: ``train``, ``val``, ``test`` or ``trainval`` (see :func:`elope.data.base.select_split`).
        transform: a ``torchvision.transforms.v2`` transform applied to image and box together.
        val_fraction: the share of the training images carved off as the stratified validation split.
        seed: the seed of that split.
        skip_unreadable: see :class:`elope.data.base.FGVCDataset`.
        max_pixels: see :class:`elope.data.base.FGVCDataset`.
        decode_size: see :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_cub)
