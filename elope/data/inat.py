"""The iNaturalist competitions 2017, 2018 and 2021 (Van Horn et al., CVPR 2018; iNat2021: Van Horn et al.,
CVPR 2021), read from their COCO-style JSON files.

Layouts (``root`` holds the JSON files and the folders the image archives extract into; the JSON names
every image by its path under ``root``)::

    inat2017  train2017.json, val2017.json   train_val_images/<supercategory>/<name>/<id>.jpg
              train_2017_bboxes.json, val_2017_bboxes.json   (optional: the boxes of some supercategories)
    inat2018  train2018.json, val2018.json   train_val2018/<supercategory>/<category id>/<id>.jpg
              categories.json                (optional: the un-obfuscated names and taxonomy, released apart)
    inat2021  train.json, val.json           train/<image_dir_name>/<uuid>.jpg, val/<image_dir_name>/...

Each JSON holds ``images`` (``id``, ``file_name``), ``annotations`` (``image_id``, ``category_id``, and in
2017 a ``bbox`` ``[x, y, width, height]`` in pixel edges for some) and ``categories`` (``id``, ``name`` and,
depending on the year, ``supercategory``, ``kingdom`` ... ``genus``, ``specific_epithet``, ``common_name``).
Labels are 0..C-1 over the training JSON's categories in id order; the taxonomy is kept for reports
(:attr:`DatasetIndex.taxonomy`). The field trains on ``train`` and reports on ``val`` (the competitions'
test labels were never released): ``val`` is this reader's ``test`` split, and the validation split is
carved from ``train`` (``val_fraction``, ``seed``). Where an image has several boxes, the largest is its box.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record, inside_root
from .base import FGVCDataset
from .errors import DatasetNotFoundError
from .layout import find_root

__all__ = ["INAT_YEARS", "INat2017", "INat2018", "INat2021", "index_inat"]

#: dataset name -> (title, training JSON, validation JSON, optional box JSONs (train, val), image folder)
INAT_YEARS: dict[str, tuple[str, str, str, tuple[str, str] | None, str]] = {
    "inat2017": (
        "iNaturalist 2017",
        "train2017.json",
        "val2017.json",
        ("train_2017_bboxes.json", "val_2017_bboxes.json"),
        "train_val_images/",
    ),
    "inat2018": ("iNaturalist 2018", "train2018.json", "val2018.json", None, "train_val2018/"),
    "inat2021": ("iNaturalist 2021", "train.json", "val.json", None, "train/ and val/"),
}
#: the category fields kept in the taxonomy, beside ``id``
RANKS = (
    "supercategory",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "specific_epithet",
    "common_name",
    "image_dir_name",
)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_json(
    path: Path, title: str, keys: tuple[str, ...] = ("images", "annotations", "categories")
) -> dict[str, Any]:
    """A COCO-style JSON file holding the lists ``keys``; one that does not parse names its line and column."""
    try:
        with path.open("rb") as file:
            content = json.load(file)
    except json.JSONDecodeError as error:
        raise DatasetNotFoundError(
            f"{title}: {path} is not valid JSON: line {error.lineno} column {error.colno}: {error.msg}",
            str(path),
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetNotFoundError(f"{title}: cannot read {path}: {error}", str(path)) from None
    if not isinstance(content, dict) or not all(isinstance(content.get(key), list) for key in keys):
        raise DatasetNotFoundError(
            f"{title}: {path} is not a COCO-style file: expected an object with the list(s) "
            f"{', '.join(repr(k) for k in keys)}",
            str(path),
        )
    return content


def _by_id(
    path: Path, section: str, entries: list[Any], name: str, problems: list[Problem]
) -> dict[int, tuple[int, dict[str, Any]]]:
    """``id -> (position, entry)`` of one list of a COCO-style file (``categories``, ``images``): each entry
    an object with an integer ``id`` and a string ``name`` field, ids once; the others are problems."""
    found: dict[int, tuple[int, dict[str, Any]]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) or not isinstance(entry.get(name), str):
            problems.append(
                Problem(str(path), f"{section}[{i}]: expected an object with an integer 'id' and a '{name}'")
            )
        elif entry["id"] in found:
            problems.append(
                Problem(
                    str(path),
                    f"{section}[{i}]: id {entry['id']} already appears at {section}[{found[entry['id']][0]}]",
                )
            )
        else:
            found[entry["id"]] = (i, entry)
    return found


def _categories(
    path: Path, entries: list[Any], extra: dict[int, dict[str, Any]], problems: list[Problem]
) -> tuple[dict[int, int], list[str], list[tuple[str, str]], list[dict[str, str]]]:
    """``category id -> label``, names, where each is named and the taxonomy, from the training JSON."""
    found = {
        key: (i, {**entry, **extra.get(key, {})})
        for key, (i, entry) in _by_id(path, "categories", entries, "name", problems).items()
    }
    ids = sorted(found)
    taxonomy = [
        {
            "id": str(i),
            **{rank: str(found[i][1][rank]) for rank in RANKS if found[i][1].get(rank) is not None},
        }
        for i in ids
    ]
    names = [str(found[i][1]["name"]) for i in ids]
    sources = [(str(path), f"categories[{found[i][0]}]") for i in ids]
    return {c: label for label, c in enumerate(ids)}, names, sources, taxonomy


def _box(value: Any) -> tuple[float, float, float, float] | None:
    """``[x, y, width, height]`` as x1, y1, x2, y2; None when it is not four finite numbers with a size."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    x, y, width, height = (float(v) for v in value)
    return (x, y, x + width, y + height) if width > 0 and height > 0 else None


def _annotations(
    path: Path, entries: list[Any], images: dict[int, Any], problems: list[Problem]
) -> tuple[dict[int, int], dict[int, tuple[float, float, float, float]]]:
    """``image id -> category id`` and ``image id -> largest box`` of one file's annotations."""
    category: dict[int, int] = {}
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for i, entry in enumerate(entries):
        where = f"annotations[{i}]"
        if (
            not isinstance(entry, dict)
            or not _is_id(entry.get("image_id"))
            or not _is_id(entry.get("category_id"))
        ):
            problems.append(Problem(str(path), f"{where}: expected integer 'image_id' and 'category_id'"))
            continue
        image_id, category_id = entry["image_id"], entry["category_id"]
        if image_id not in images:
            problems.append(Problem(str(path), f"{where}: image id {image_id} is not in 'images'"))
            continue
        if category.setdefault(image_id, category_id) != category_id:
            problems.append(
                Problem(
                    str(path),
                    f"{where}: image {image_id} has categories {category[image_id]} and {category_id}",
                )
            )
        if "bbox" in entry:
            box = _box(entry["bbox"])
            if box is None:
                problems.append(
                    Problem(
                        str(path),
                        f"{where}: bbox {entry['bbox']!r} must be [x, y, width, height] with width, height > 0",
                    )
                )
            elif image_id not in boxes or _area(box) > _area(boxes[image_id]):
                boxes[image_id] = box
    return category, boxes


def _area(box: tuple[float, float, float, float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _images(path: Path, entries: list[Any], problems: list[Problem]) -> dict[int, tuple[int, str]]:
    """``image id -> (position, file_name)`` of one file's ``images``."""
    return {
        key: (i, entry["file_name"])
        for key, (i, entry) in _by_id(path, "images", entries, "file_name", problems).items()
    }


def _split(
    base: Path,
    path: Path,
    content: dict[str, Any],
    box_file: Path | None,
    class_index: dict[int, int],
    problems: list[Problem],
) -> tuple[list[Record], bool]:
    """The records of one JSON file (its boxes merged from ``box_file`` where given) and whether any has a box."""
    images = _images(path, content["images"], problems)
    category, boxes = _annotations(path, content["annotations"], images, problems)
    if box_file is not None and box_file.is_file():
        extra = read_json(box_file, path.name, ("annotations",))
        _, more = _annotations(box_file, extra["annotations"], images, problems)
        for image_id, box in more.items():
            if image_id not in boxes or _area(box) > _area(boxes[image_id]):
                boxes[image_id] = box
    records = []
    for image_id, (i, file_name) in images.items():
        where = f"images[{i}]"
        image = inside_root(base, file_name, path, where, problems)
        if image_id not in category:
            problems.append(
                Problem(str(path), f"{where}: image id {image_id} ({file_name}) has no annotation")
            )
        elif category[image_id] not in class_index:
            problems.append(
                Problem(
                    str(path),
                    f"{where}: category_id {category[image_id]} of image {image_id} is out of range (not in the categories of the training file)",
                )
            )
        elif image is not None:
            label = class_index[category[image_id]]
            records.append(Record(image, label, boxes.get(image_id), str(image_id), str(path), where))
    return records, bool(boxes)


def _extra_taxonomy(base: Path, title: str) -> dict[int, dict[str, Any]]:
    """iNat2018's ``categories.json`` (names and taxonomy un-obfuscated, released apart), by id; empty where absent."""
    path = base / "categories.json"
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetNotFoundError(f"{title}: cannot read {path} as JSON: {error}", str(path)) from None
    if not isinstance(entries, list):
        return {}
    return {e["id"]: e for e in entries if isinstance(e, dict) and _is_id(e.get("id"))}


def find_inat_root(name: str, root: str | Path) -> Path:
    """The folder holding the year's training JSON."""
    title, train, val, _, folder = INAT_YEARS[name]
    base = Path(root).expanduser()
    return find_root(
        root,
        title,
        lambda f: (f / train).is_file(),
        f"{base / train} and {val} beside it, with {folder} (root = the folder the annotation and image "
        "archives extract into)",
    )


def index_inat(name: str, root: str | Path) -> DatasetIndex:
    """Read one iNaturalist year (``inat2017``, ``inat2018``, ``inat2021``) into a :class:`DatasetIndex`."""
    title, train, val, box_files, _ = INAT_YEARS[name]
    base = find_inat_root(name, root)
    val_path = base / val
    if not val_path.is_file():
        raise DatasetNotFoundError(
            f"{title}: expected the validation file {val_path} beside {train}", str(val_path)
        )
    problems: list[Problem] = []
    train_content = read_json(base / train, title)
    extra = _extra_taxonomy(base, title) if name == "inat2018" else {}
    class_index, classes, sources, taxonomy = _categories(
        base / train, train_content["categories"], extra, problems
    )
    splits, has_boxes = {}, False
    for split, path, content, box_name in (
        ("train", base / train, train_content, box_files[0] if box_files else None),
        ("test", val_path, read_json(val_path, title), box_files[1] if box_files else None),
    ):
        box_file = base / box_name if box_name else None
        splits[split], boxed = _split(base, path, content, box_file, class_index, problems)
        has_boxes = has_boxes or boxed
    return DatasetIndex(
        name, base, classes, splits, has_boxes, problems, class_sources=sources, taxonomy=taxonomy
    )


def index_inat2017(root: str | Path) -> DatasetIndex:
    return index_inat("inat2017", root)


def index_inat2018(root: str | Path) -> DatasetIndex:
    return index_inat("inat2018", root)


def index_inat2021(root: str | Path) -> DatasetIndex:
    return index_inat("inat2021", root)


class INat2017(FGVCDataset):
    """iNaturalist 2017 (5,089 species, 579,184 train / 95,986 val images; boxes for some).

    Args:
        root: the folder holding ``train2017.json``, ``val2017.json`` and ``train_val_images/``.
        split: ``train``, ``val``, ``test`` (the competition's val) or ``trainval`` (its train).

    The other options (``transform``, ``val_fraction``, ``seed``, ``skip_unreadable``, ``max_pixels``,
    ``decode_size``, ``zero_shot``) are those of :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_inat2017)


class INat2018(FGVCDataset):
    """iNaturalist 2018 (8,142 species, 437,513 train / 24,426 val images); arguments as :class:`INat2017`,
    ``root`` holding ``train2018.json``, ``val2018.json`` and ``train_val2018/``."""

    build_index = staticmethod(index_inat2018)


class INat2021(FGVCDataset):
    """iNaturalist 2021 (10,000 species, 2,686,843 train / 100,000 val images); arguments as
    :class:`INat2017`, ``root`` holding ``train.json``, ``val.json``, ``train/`` and ``val/``."""

    build_index = staticmethod(index_inat2021)
