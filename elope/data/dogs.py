"""Stanford Dogs (Khosla et al., FGVC workshop at CVPR 2011: 20,580 images of 120 breeds, 12,000 train /
8,580 test, boxes), read from its own files.

Layout (as extracted from ``images.tar``, ``annotation.tar`` and ``lists.tar``)::

    Images/<wnid>-<breed>/<wnid>_<n>.jpg        e.g. Images/n02085620-Chihuahua/n02085620_10074.jpg
    Annotation/<wnid>-<breed>/<wnid>_<n>        PASCAL VOC XML, no extension: the dog boxes
    train_list.mat, test_list.mat               file_list, annotation_list, labels (1..120)
                                                (also accepted in lists/)

``root`` is the folder holding ``Images/``. Labels are ``labels - 1`` over the labels the lists use; a class
is named by its folder's breed (``Chihuahua``), its WordNet id kept in :attr:`DatasetIndex.taxonomy`.
Boxes: :mod:`elope.data.voc` (the largest dog where an image has several).
"""

from __future__ import annotations

from pathlib import Path

from .annotations import DatasetIndex, Problem, Record, inside_root
from .base import FGVCDataset
from .errors import DatasetNotFoundError
from .layout import find_root
from .matfile import as_int, load_mat_variables, shown
from .voc import read_voc_box

__all__ = ["StanfordDogs", "find_dogs_root", "index_dogs"]

NAME = "Stanford Dogs"
NUM_CLASSES = 120
_KEYS = ("file_list", "annotation_list", "labels")


def _list_file(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / "lists" / name, folder / name) if p.is_file()), None)


def find_dogs_root(root: str | Path) -> Path:
    """The folder holding ``Images/`` and ``train_list.mat`` (or ``lists/train_list.mat``)."""
    base = Path(root).expanduser()
    return find_root(
        root,
        NAME,
        lambda folder: (folder / "Images").is_dir() and _list_file(folder, "train_list.mat") is not None,
        f"{base / 'Images'}/ and {base / 'train_list.mat'} (or lists/train_list.mat) (root = the folder that "
        "images.tar, annotation.tar and lists.tar extract into)",
    )


def _entries(path: Path, problems: list[Problem]) -> list[tuple[str, str, int]]:
    """``(file, annotation, label)`` per entry of a list file; malformed entries are problems."""
    variables = load_mat_variables(path, _KEYS, NAME)
    lengths = {key: len(variables[key]) for key in _KEYS}
    if len(set(lengths.values())) != 1:
        problems.append(
            Problem(str(path), f"file_list, annotation_list and labels differ in length: {lengths}")
        )
    entries = []
    for number, (file, annotation, label) in enumerate(zip(*(variables[k] for k in _KEYS)), start=1):
        try:
            label = as_int(label)
        except ValueError:
            problems.append(
                Problem(str(path), f"entry {number} ({file}): label {shown(label)} is not an integer")
            )
            continue
        if not 1 <= label <= NUM_CLASSES:
            problems.append(
                Problem(
                    str(path), f"entry {number} ({file}): label {label} is out of range (1..{NUM_CLASSES})"
                )
            )
            continue
        entries.append((str(file), str(annotation), label))
    return entries


def _classes(
    lists: dict[str, tuple[Path, list[tuple[str, str, int]]]], problems: list[Problem]
) -> tuple[dict[int, int], list[str], list[dict[str, str]]]:
    """``list label -> label``, the breed names and ``{"id", "wnid"}`` per class, from the lists' folders."""
    folder_of: dict[int, str] = {}
    label_of: dict[str, int] = {}
    for path, entries in lists.values():
        for number, (file, _, label) in enumerate(entries, start=1):
            folder = file.split("/")[0]
            folder_of.setdefault(label, folder)
            if label_of.setdefault(folder, label) != label:
                problems.append(
                    Problem(
                        str(path),
                        f"entry {number} ({file}): label {label}, but the other images of {folder}/ have "
                        f"label {label_of[folder]}",
                    )
                )
    ids = sorted(folder_of)
    names = [folder_of[i].split("-", 1)[-1] for i in ids]
    taxonomy = [{"id": str(i), "wnid": folder_of[i].split("-", 1)[0]} for i in ids]
    return {i: label for label, i in enumerate(ids)}, names, taxonomy


def index_dogs(root: str | Path) -> DatasetIndex:
    """Read Stanford Dogs' lists and XML boxes into a :class:`DatasetIndex` (no image is opened)."""
    base = find_dogs_root(root)
    problems: list[Problem] = []
    lists = {}
    for split in ("train", "test"):
        path = _list_file(base, f"{split}_list.mat")
        if path is None:
            raise DatasetNotFoundError(
                f"{NAME}: expected {base / f'{split}_list.mat'} (or in lists/), from lists.tar", str(base)
            )
        lists[split] = (path, _entries(path, problems))
    class_index, classes, taxonomy = _classes(lists, problems)
    has_boxes = (base / "Annotation").is_dir()
    splits: dict[str, list[Record]] = {}
    for split, (path, entries) in lists.items():
        splits[split] = []
        for number, (file, annotation, label) in enumerate(entries, start=1):
            where = f"entry {number}"
            image = inside_root(base / "Images", file, path, where, problems)
            xml = inside_root(base / "Annotation", annotation, path, where, problems) if has_boxes else None
            if image is None or (has_boxes and xml is None):
                continue
            box = None
            if xml is not None:
                if xml.is_file():
                    box = read_voc_box(xml, problems)
                else:
                    problems.append(
                        Problem(str(xml), f"the box annotation of {file} ({path.name}, {where}) is missing")
                    )
            splits[split].append(Record(image, class_index[label], box, file, str(path), where))
    return DatasetIndex("dogs", base, classes, splits, has_boxes, problems, taxonomy=taxonomy)


class StanfordDogs(FGVCDataset):
    """Stanford Dogs as its authors distribute it (120 breeds, boxes, the official train/test lists).

    Args:
        root: the folder holding ``Images/``, ``Annotation/`` and the list files.
        split: ``train``, ``val``, ``test`` or ``trainval``; Dogs has no validation split, so train/val are
            carved from the training images (``val_fraction``, ``seed``).

    The other options (``transform``, ``val_fraction``, ``seed``, ``skip_unreadable``, ``max_pixels``,
    ``decode_size``, ``zero_shot``) are those of :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_dogs)
