"""NABirds (Van Horn et al., CVPR 2015: 48,562 images of 555 visual categories of North American birds,
23,929 train / 24,633 test), read from its own files.

Layout (as extracted from ``nabirds.tar.gz``)::

    nabirds/images.txt              <image_id> <image_name>         (ids are UUIDs, names 0817/<hex>.jpg)
    nabirds/image_class_labels.txt  <image_id> <class_id>
    nabirds/train_test_split.txt    <image_id> <is_training_image>  (1 train, 0 test)
    nabirds/bounding_boxes.txt      <image_id> <x> <y> <width> <height>
    nabirds/classes.txt             <class_id> <class name, spaces allowed>   (1011 ids, every node)
    nabirds/hierarchy.txt           <child_class_id> <parent_class_id>
    nabirds/images/<image_name>

``root`` is the folder holding ``nabirds/``, or ``nabirds/`` itself. ``classes.txt`` names every node of the
taxonomy, its ids sparse among the 555 leaves that have images: labels are 0..C-1 over the class ids that
``image_class_labels.txt`` uses, in id order. ``hierarchy.txt`` is kept for reports
(:attr:`DatasetIndex.taxonomy`: the class's id, parent and lineage). Boxes follow CUB's convention
(top-left x, y, width, height in pixel edges).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record, inside_root, keyed_rows, read_rows, require_file
from .base import FGVCDataset
from .layout import find_root

__all__ = ["NABirds", "find_nabirds_root", "index_nabirds"]

NAME = "NABirds"
_TABLES = {
    "images.txt": [("image_id", str), ("image_name", str)],
    "image_class_labels.txt": [("image_id", str), ("class_id", int)],
    "train_test_split.txt": [("image_id", str), ("is_training_image", int)],
}
_BOX_COLUMNS = [("image_id", str), ("x", float), ("y", float), ("width", float), ("height", float)]


def find_nabirds_root(root: str | Path) -> Path:
    """The ``nabirds`` folder: ``root/nabirds`` or ``root`` itself."""
    base = Path(root).expanduser()
    return find_root(
        root,
        NAME,
        lambda folder: (folder / "hierarchy.txt").is_file() and (folder / "images.txt").is_file(),
        f"{base / 'nabirds' / 'hierarchy.txt'} and images.txt beside it (root = the folder holding nabirds/, "
        "as extracted from nabirds.tar.gz), or nabirds/ itself",
        ("nabirds",),
    )


def _missing_ids(
    name: str, table: dict[Any, Any], images: dict[Any, Any], files: dict[str, Path], problems: list[Problem]
) -> None:
    """Ids of ``name`` missing from images.txt, and images without a line in ``name``."""
    for image_id, (number, _) in table.items():
        if image_id not in images:
            problems.append(
                Problem(str(files[name]), f"line {number}: image id {image_id} is not in images.txt")
            )
    for image_id, (number, _) in images.items():
        if image_id not in table:
            problems.append(
                Problem(str(files["images.txt"]), f"line {number}: image id {image_id} has no line in {name}")
            )


def _lineage(class_id: int, names: dict[int, str], parents: dict[int, int]) -> list[str]:
    """The names of ``class_id``'s ancestors, the root first (a loop in hierarchy.txt ends the walk)."""
    chain: list[str] = []
    seen = {class_id}
    node = parents.get(class_id)
    while node is not None and node not in seen and node in names:
        chain.append(names[node])
        seen.add(node)
        node = parents.get(node)
    return chain[::-1]


def _read_hierarchy(path: Path, names: dict[int, str], problems: list[Problem]) -> dict[int, int]:
    """``child -> parent`` of ``hierarchy.txt``; ids that classes.txt lacks are problems."""
    rows = keyed_rows(path, read_rows(path, [("child", int), ("parent", int)], problems), problems)
    parents = {}
    for child, (number, (parent,)) in rows.items():
        unknown = [str(i) for i in (child, parent) if i not in names]
        if unknown:
            problems.append(
                Problem(str(path), f"line {number}: class id {', '.join(unknown)} is not in classes.txt")
            )
            continue
        parents[child] = parent
    return parents


def _classes(
    files: dict[str, Path], tables: dict[str, dict[Any, Any]], problems: list[Problem]
) -> tuple[dict[int, int], list[str], list[tuple[str, str]], list[dict[str, str]]]:
    """``class_id -> label`` over the ids images use, the names, where each is named, and the taxonomy."""
    class_path = files["classes.txt"]
    rows = keyed_rows(
        class_path, read_rows(class_path, [("id", int), ("name", str)], problems, rest=True), problems
    )
    names = {class_id: values[0] for class_id, (_, values) in rows.items()}
    parents = _read_hierarchy(files["hierarchy.txt"], names, problems)
    used = set()
    for number, (class_id,) in tables["image_class_labels.txt"].values():
        if class_id in names:
            used.add(class_id)
        else:
            problems.append(
                Problem(
                    str(files["image_class_labels.txt"]),
                    f"line {number}: class id {class_id} is out of range (not in classes.txt)",
                )
            )
    ids = sorted(used)
    taxonomy = []
    for class_id in ids:
        lineage = _lineage(class_id, names, parents)
        taxonomy.append(
            {"id": str(class_id), "parent": lineage[-1] if lineage else "", "lineage": " > ".join(lineage)}
        )
    sources = [(str(class_path), f"line {rows[i][0]}") for i in ids]
    return {c: label for label, c in enumerate(ids)}, [names[i] for i in ids], sources, taxonomy


def _boxes(path: Path, problems: list[Problem]) -> dict[Any, Any]:
    """``image_id -> (line, [x, y, w, h])``; boxes without a positive width and height reported."""
    boxes = keyed_rows(path, read_rows(path, _BOX_COLUMNS, problems), problems)
    for image_id, (number, (_, _, width, height)) in boxes.items():
        if not (width > 0 and height > 0):
            problems.append(
                Problem(
                    str(path),
                    f"line {number}: box of image {image_id} has width {width} and height {height}; both must be > 0",
                )
            )
    return boxes


def _records(
    base: Path, files: dict[str, Path], tables: dict[str, dict[Any, Any]], boxes: dict[Any, Any],
    class_index: dict[int, int], problems: list[Problem],
) -> dict[str, list[Record]]:  # fmt: skip
    """The records of the images with a known class and a 0/1 split flag, in ``train`` and ``test``."""
    labels, flags = tables["image_class_labels.txt"], tables["train_test_split.txt"]
    splits: dict[str, list[Record]] = {"train": [], "test": []}
    for number, (flag,) in flags.values():
        if flag not in (0, 1):
            problems.append(
                Problem(
                    str(files["train_test_split.txt"]),
                    f"line {number}: is_training_image must be 0 or 1, got {flag}",
                )
            )
    for image_id, (number, (image_name,)) in tables["images.txt"].items():
        path = inside_root(base / "images", image_name, files["images.txt"], f"line {number}", problems)
        if path is None or image_id not in labels or image_id not in flags:
            continue  # reported: a path outside the root, an image without a label or split line
        class_id, flag = labels[image_id][1][0], flags[image_id][1][0]
        if class_id not in class_index or flag not in (0, 1):
            continue  # reported: a class id out of range, a split flag other than 0 or 1
        box = None
        if image_id in boxes:
            x, y, width, height = boxes[image_id][1]
            box = (x, y, x + width, y + height)
        record = Record(
            path, class_index[class_id], box, image_id, str(files["images.txt"]), f"line {number}"
        )
        splits["train" if flag == 1 else "test"].append(record)
    return splits


def index_nabirds(root: str | Path) -> DatasetIndex:
    """Read NABirds' annotation files into a :class:`DatasetIndex` (no image is opened)."""
    base = find_nabirds_root(root)
    problems: list[Problem] = []
    files = {
        name: require_file(base / name, NAME, f"the annotation file {name}")
        for name in (*_TABLES, "classes.txt", "hierarchy.txt")
    }
    tables = {
        name: keyed_rows(files[name], read_rows(files[name], columns, problems), problems)
        for name, columns in _TABLES.items()
    }
    class_index, classes, sources, taxonomy = _classes(files, tables, problems)
    box_path = base / "bounding_boxes.txt"
    has_boxes = box_path.is_file()
    boxes = _boxes(box_path, problems) if has_boxes else {}
    for name in ("image_class_labels.txt", "train_test_split.txt"):
        _missing_ids(name, tables[name], tables["images.txt"], files, problems)
    if has_boxes:
        files["bounding_boxes.txt"] = box_path
        _missing_ids("bounding_boxes.txt", boxes, tables["images.txt"], files, problems)
    splits = _records(base, files, tables, boxes, class_index, problems)
    return DatasetIndex(
        "nabirds", base, classes, splits, has_boxes, problems, class_sources=sources, taxonomy=taxonomy
    )


class NABirds(FGVCDataset):
    """NABirds as its authors distribute it (555 classes, boxes, the official train/test split).

    Args:
        root: the folder holding ``nabirds/``, or that folder itself.
        split: ``train``, ``val``, ``test`` or ``trainval``; NABirds has no validation split, so train/val
            are carved from the training images (``val_fraction``, ``seed``).

    The other options (``transform``, ``val_fraction``, ``seed``, ``skip_unreadable``, ``max_pixels``,
    ``decode_size``, ``zero_shot``) are those of :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_nabirds)
