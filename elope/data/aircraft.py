"""FGVC-Aircraft 2013b (Maji et al. 2013; Table 1: 6667 trainval / 3333 test images, 100 variants) from
its own files::

    fgvc-aircraft-2013b/data/images/<image_id>.jpg
    fgvc-aircraft-2013b/data/variants.txt, families.txt, manufacturers.txt   one class name per line
    fgvc-aircraft-2013b/data/images_{variant,family,manufacturer}_{train,val,trainval,test}.txt
                                                           <image_id> <class name, spaces and / allowed>
    fgvc-aircraft-2013b/data/images_box.txt               <image_id> <xmin> <ymin> <xmax> <ymax>
    fgvc-aircraft-2013b/data/images_{train,val,test}.txt  <image_id>   (optional, cross-checked)

``root`` is the folder holding ``fgvc-aircraft-2013b/``, that folder, or its ``data/`` folder. Image ids
are kept as strings (they have leading zeros). Labels index the class list file of the chosen
``annotation_level`` in file order; the paper uses ``variant`` (100 classes) with ``trainval`` for
training.

Box convention: the dataset's README says "The top-left pixel of an image has coordinate (1,1)", and the
boxes are inclusive pixel indices, so x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax in pixel-edge
coordinates (the convention of the Cars devkit as well).

Banner: every image carries a 20-pixel copyright banner at the bottom, which the README asks users to
remove. With ``remove_banner=True`` (default) the bottom 20 rows are cropped away on loading and boxes are
clamped to the remaining ``H - 20`` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record, inside_root, keyed_rows, read_rows, require_file
from .base import FGVCDataset
from .errors import DatasetNotFoundError

__all__ = ["ANNOTATION_LEVELS", "BANNER_HEIGHT", "FGVCAircraft", "find_aircraft_root", "index_aircraft"]

NAME = "FGVC-Aircraft"
BANNER_HEIGHT = 20
#: annotation level -> file listing its class names
ANNOTATION_LEVELS = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
_OWN_SPLITS = ("train", "val", "test")


def find_aircraft_root(root: str | Path) -> Path:
    """The ``data`` folder: ``root/fgvc-aircraft-2013b/data``, ``root/data`` or ``root``."""
    root = Path(root).expanduser()
    for candidate in (root / "fgvc-aircraft-2013b" / "data", root / "data", root):
        if (candidate / "variants.txt").is_file():
            return candidate
    raise DatasetNotFoundError(
        f"{NAME} not found: expected {root / 'fgvc-aircraft-2013b' / 'data' / 'variants.txt'} (root = the folder "
        "holding fgvc-aircraft-2013b/, as extracted from fgvc-aircraft-2013b.tar.gz), or variants.txt in "
        f"{root / 'data'} or {root}.",
        str(root),
    )


def _read_split(
    path: Path, class_index: dict[str, int], level_file: str, problems: list[Problem]
) -> dict[str, tuple[int, int]]:
    """``image_id -> (line, label)`` of one ``images_<level>_<split>.txt``."""
    rows = keyed_rows(
        path, read_rows(path, [("image_id", str), ("class_name", str)], problems, rest=True), problems
    )
    labels: dict[str, tuple[int, int]] = {}
    for image_id, (number, (name,)) in rows.items():
        if inside_root(path.parent / "images", f"{image_id}.jpg", path, f"line {number}", problems) is None:
            continue
        if name not in class_index:
            problems.append(Problem(str(path), f"line {number}: class {name!r} is not in {level_file}"))
            continue
        labels[image_id] = (number, class_index[name])
    return labels


def _compare_ids(
    path: Path, ids: dict[str, Any], other_path: Path, other_ids: set[str], problems: list[Problem]
) -> None:
    for image_id, (number, *_) in ids.items():
        if image_id not in other_ids:
            problems.append(
                Problem(str(path), f"line {number}: image {image_id} is not in {other_path.name}")
            )


def _read_classes(class_path: Path, problems: list[Problem]) -> tuple[list[str], list[tuple[str, str]]]:
    """The class names of a level file in file order and where each is named; a name listed twice is
    reported and kept once (labels are looked up by name)."""
    classes: list[str] = []
    sources: list[tuple[str, str]] = []
    for number, (name,) in read_rows(class_path, [("class_name", str)], problems, rest=True):
        if name in classes:
            problems.append(Problem(str(class_path), f"line {number}: class {name!r} is listed twice"))
        else:
            classes.append(name)
            sources.append((str(class_path), f"line {number}"))
    return classes, sources


def _read_boxes(box_path: Path, problems: list[Problem]) -> dict[str, tuple[int, list[Any]]]:
    """``image_id -> (line, [xmin, ymin, xmax, ymax])`` of ``images_box.txt``; impossible boxes reported."""
    columns = [("image_id", str), ("xmin", int), ("ymin", int), ("xmax", int), ("ymax", int)]
    boxes = keyed_rows(box_path, read_rows(box_path, columns, problems), problems)
    for image_id, (number, (xmin, ymin, xmax, ymax)) in boxes.items():
        if xmax < xmin or ymax < ymin or xmin < 1 or ymin < 1:
            problems.append(
                Problem(
                    str(box_path),
                    f"line {number}: box ({xmin}, {ymin}, {xmax}, {ymax}) of image {image_id} must have "
                    "1 <= xmin <= xmax and 1 <= ymin <= ymax",
                )
            )
    return boxes


def _read_labels(
    base: Path, annotation_level: str, class_index: dict[str, int], problems: list[Problem]
) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, Path]]:
    """The labels of every split at one level (``trainval`` only where its file exists), and their files."""
    level_file = ANNOTATION_LEVELS[annotation_level]
    labels: dict[str, dict[str, tuple[int, int]]] = {}
    paths: dict[str, Path] = {}
    for split in (*_OWN_SPLITS, "trainval"):
        paths[split] = base / f"images_{annotation_level}_{split}.txt"
        if split == "trainval" and not paths[split].is_file():
            continue  # optional: derived from train + val
        require_file(paths[split], NAME, f"the {split} labels at the {annotation_level} level")
        labels[split] = _read_split(paths[split], class_index, level_file, problems)
    return labels, paths


def _cross_check(
    base: Path,
    labels: dict[str, dict[str, tuple[int, int]]],
    paths: dict[str, Path],
    boxes: dict[str, tuple[int, list[Any]]] | None,
    problems: list[Problem],
) -> None:
    """Report images of a split missing from the box file, from ``images_<split>.txt`` or from trainval."""
    box_path = base / "images_box.txt"
    for split in _OWN_SPLITS:
        if boxes is not None:
            _compare_ids(paths[split], labels[split], box_path, set(boxes), problems)
        plain = base / f"images_{split}.txt"
        if plain.is_file():
            listed = keyed_rows(plain, read_rows(plain, [("image_id", str)], problems), problems)
            _compare_ids(paths[split], labels[split], plain, set(listed), problems)
            _compare_ids(plain, listed, paths[split], set(labels[split]), problems)
    if "trainval" in labels:
        union = {**labels["train"], **labels["val"]}
        _compare_ids(paths["trainval"], labels["trainval"], paths["train"], set(union), problems)
        for split in ("train", "val"):
            _compare_ids(paths[split], labels[split], paths["trainval"], set(labels["trainval"]), problems)


def _record(
    base: Path, boxes: dict[str, tuple[int, list[Any]]], image_id: str, label: int, source: Path, line: int
) -> Record:
    """The record of one image (named on ``line`` of ``source``), its 1-based inclusive box turned into
    pixel edges."""
    box = None
    if image_id in boxes:
        xmin, ymin, xmax, ymax = boxes[image_id][1]
        box = (xmin - 1.0, ymin - 1.0, float(xmax), float(ymax))
    return Record(base / "images" / f"{image_id}.jpg", label, box, image_id, str(source), f"line {line}")


def index_aircraft(
    root: str | Path, annotation_level: str = "variant", remove_banner: bool = True
) -> DatasetIndex:
    """Read the FGVC-Aircraft annotation files of one level into a :class:`DatasetIndex`."""
    if annotation_level not in ANNOTATION_LEVELS:
        raise ValueError(
            f"unknown annotation_level {annotation_level!r}; expected one of {', '.join(ANNOTATION_LEVELS)}"
        )
    base = find_aircraft_root(root)
    problems: list[Problem] = []
    class_path = require_file(
        base / ANNOTATION_LEVELS[annotation_level], NAME, f"the {annotation_level} names"
    )
    classes, class_sources = _read_classes(class_path, problems)
    class_index = {name: i for i, name in enumerate(classes)}
    box_path = base / "images_box.txt"
    has_boxes = box_path.is_file()
    boxes = _read_boxes(box_path, problems) if has_boxes else {}
    labels, paths = _read_labels(base, annotation_level, class_index, problems)
    _cross_check(base, labels, paths, boxes if has_boxes else None, problems)
    splits = {
        split: [
            _record(base, boxes, image_id, label, paths[split], line)
            for image_id, (line, label) in table.items()
        ]
        for split, table in labels.items()
    }
    banner = BANNER_HEIGHT if remove_banner else 0
    return DatasetIndex(
        "aircraft", base, classes, splits, has_boxes, problems, banner=banner, class_sources=class_sources
    )


class FGVCAircraft(FGVCDataset):
    """FGVC-Aircraft 2013b as its authors distribute it.

    Args:
        root: the folder holding ``fgvc-aircraft-2013b/`` (or that folder, or its ``data/``).
        split: ``train``, ``val``, ``test`` or ``trainval`` — all four are the dataset's own.
        transform: a ``torchvision.transforms.v2`` transform applied to image and box together.
        annotation_level: ``variant`` (100 classes, the paper's), ``family`` or ``manufacturer``.
        remove_banner: crop the 20-pixel copyright banner at the bottom (boxes clamped to match).
        options: ``val_fraction`` and ``seed`` are unused (the dataset ships its validation split),
            accepted for uniformity; ``skip_unreadable``, ``max_pixels``, ``decode_size``: see
            :class:`elope.data.base.FGVCDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Any = None,
        *,
        annotation_level: str = "variant",
        remove_banner: bool = True,
        **options: Any,
    ) -> None:
        self.annotation_level = annotation_level
        self.remove_banner = remove_banner
        super().__init__(root, split, transform, **options)

    def build_index(self, root: str | Path) -> DatasetIndex:
        return index_aircraft(root, self.annotation_level, self.remove_banner)
