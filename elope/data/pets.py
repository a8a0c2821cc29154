"""The Oxford-IIIT Pet dataset (Parkhi et al., CVPR 2012: 7,349 images of 37 cat and dog breeds; 3,680
trainval / 3,669 test; head boxes for the trainval images), read from its own files.

Layout (as extracted from ``images.tar.gz`` and ``annotations.tar.gz``)::

    images/<Breed>_<n>.jpg                  cat breeds capitalised (Abyssinian_1), dog breeds not (beagle_1)
    annotations/trainval.txt, test.txt      <image name> <class id 1..37> <species 1 cat, 2 dog> <breed id>
    annotations/xmls/<image name>.xml       PASCAL VOC XML: the pet's head box (trainval images only)

``root`` is the folder holding ``images/`` and ``annotations/``, or the folder holding ``oxford-iiit-pet/``
with them (torchvision's layout). Labels are 0..C-1 over the class ids the lists use, in id order; a class is
named by its breed as the image names spell it (``Abyssinian``, ``american_bulldog``). Boxes are the head
boxes (:mod:`elope.data.voc`); images without an XML file have none (every test image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record, inside_root, keyed_rows, read_rows, require_file
from .base import FGVCDataset
from .layout import find_root
from .voc import read_voc_box

__all__ = ["OxfordPets", "find_pets_root", "index_pets"]

NAME = "Oxford-IIIT Pet"
NUM_CLASSES = 37
SPECIES = {1: "cat", 2: "dog"}
_COLUMNS = [("image", str), ("class_id", int), ("species", int), ("breed_id", int)]
_LISTS = {"trainval": "trainval.txt", "test": "test.txt"}


def find_pets_root(root: str | Path) -> Path:
    """The folder holding ``images/`` and ``annotations/``: ``root`` or ``root/oxford-iiit-pet``."""
    base = Path(root).expanduser()
    return find_root(
        root,
        NAME,
        lambda folder: (folder / "annotations" / "trainval.txt").is_file(),
        f"{base / 'annotations' / 'trainval.txt'} and images/ beside annotations/ (root = the folder "
        "images.tar.gz and annotations.tar.gz extract into), or oxford-iiit-pet/ inside it",
        ("oxford-iiit-pet",),
    )


def _rows(path: Path, problems: list[Problem]) -> dict[str, tuple[int, list[Any]]]:
    """``image name -> (line, [class id, species, breed id])`` of one list; impossible values reported."""
    rows = keyed_rows(path, read_rows(path, _COLUMNS, problems), problems)
    kept = {}
    for name, (number, (class_id, species, breed_id)) in rows.items():
        if not 1 <= class_id <= NUM_CLASSES:
            problems.append(
                Problem(str(path), f"line {number}: class id {class_id} is out of range (1..{NUM_CLASSES})")
            )
        elif species not in SPECIES:
            problems.append(
                Problem(str(path), f"line {number}: species must be 1 (cat) or 2 (dog), got {species}")
            )
        else:
            kept[name] = (number, [class_id, species, breed_id])
    return kept


def _classes(
    lists: dict[str, tuple[Path, dict[str, Any]]], problems: list[Problem]
) -> tuple[dict[int, int], list[str], list[tuple[str, str]], list[dict[str, str]]]:
    """``class id -> label``, breed names, where each is named and ``{"id", "species"}``, from the lists."""
    first: dict[int, tuple[str, int, str, int]] = {}  # class id -> (breed, species, file, line)
    for path, rows in lists.values():
        for name, (number, (class_id, species, _)) in rows.items():
            breed = name.rsplit("_", 1)[0]
            known = first.setdefault(class_id, (breed, species, str(path), number))
            if (known[0], known[1]) != (breed, species):
                problems.append(
                    Problem(
                        str(path),
                        f"line {number}: class id {class_id} is {known[0]} ({SPECIES[known[1]]}) on line "
                        f"{known[3]} of {Path(known[2]).name}, but {name} ({SPECIES[species]}) here",
                    )
                )
    ids = sorted(first)
    taxonomy = [{"id": str(i), "species": SPECIES[first[i][1]]} for i in ids]
    sources = [(first[i][2], f"line {first[i][3]}") for i in ids]
    return {c: label for label, c in enumerate(ids)}, [first[i][0] for i in ids], sources, taxonomy


def index_pets(root: str | Path) -> DatasetIndex:
    """Read the Pets lists and head boxes into a :class:`DatasetIndex` (no image is opened)."""
    base = find_pets_root(root)
    problems: list[Problem] = []
    lists = {}
    for split, file in _LISTS.items():
        path = require_file(base / "annotations" / file, NAME, f"the {split} list")
        lists[split] = (path, _rows(path, problems))
    class_index, classes, sources, taxonomy = _classes(lists, problems)
    xmls = base / "annotations" / "xmls"
    has_boxes = xmls.is_dir()
    splits: dict[str, list[Record]] = {}
    for split, (path, rows) in lists.items():
        splits[split] = []
        for name, (number, (class_id, _, _)) in rows.items():
            image = inside_root(base / "images", f"{name}.jpg", path, f"line {number}", problems)
            if image is None:
                continue
            xml = xmls / f"{name}.xml"
            box = read_voc_box(xml, problems) if has_boxes and xml.is_file() else None
            splits[split].append(Record(image, class_index[class_id], box, name, str(path), f"line {number}"))
    splits["train"] = splits.pop("trainval")  # the dataset's training split (no validation split of its own)
    return DatasetIndex(
        "pets", base, classes, splits, has_boxes, problems, class_sources=sources, taxonomy=taxonomy
    )


class OxfordPets(FGVCDataset):
    """Oxford-IIIT Pet with its official trainval / test lists and head boxes.

    Args:
        root: the folder holding ``images/`` and ``annotations/`` (or ``oxford-iiit-pet/``).
        split: ``train``, ``val``, ``test`` or ``trainval``; train/val are carved from trainval
            (``val_fraction``, ``seed``).

    The other options (``transform``, ``val_fraction``, ``seed``, ``skip_unreadable``, ``max_pixels``,
    ``decode_size``, ``zero_shot``) are those of :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_pets)
