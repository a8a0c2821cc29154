"""Oxford Flowers-102 (Nilsback & Zisserman, ICVGIP 2008: 8,189 images of 102 flower species; 1,020 train,
1,020 val, 6,149 test), read from its own files.

Layout (``102flowers.tgz`` extracted beside the two label files)::

    jpg/image_00001.jpg ... jpg/image_08189.jpg
    imagelabels.mat     labels: the class (1..102) of image i at position i
    setid.mat           trnid, valid, tstid: the 1-based image numbers of the official splits

``root`` is the folder holding these, or the folder holding ``flowers-102/`` with them (torchvision's
layout). The dataset ships no class names: a class is named by its number (``"001"`` ... ``"102"``);
labels are 0..C-1 over the classes the images use, in number order. The official ``val`` split is the
validation split (``trainval`` = train + val). There are no boxes.
"""

from __future__ import annotations

from pathlib import Path

from .annotations import DatasetIndex, Problem, Record
from .base import FGVCDataset
from .layout import find_root
from .matfile import as_int, load_mat_variables, shown

__all__ = ["Flowers102", "find_flowers_root", "index_flowers"]

NAME = "Oxford Flowers-102"
NUM_CLASSES = 102
_SPLITS = {"train": "trnid", "val": "valid", "test": "tstid"}


def find_flowers_root(root: str | Path) -> Path:
    """The folder holding ``jpg/``, ``imagelabels.mat`` and ``setid.mat``: ``root`` or ``root/flowers-102``."""
    base = Path(root).expanduser()
    return find_root(
        root,
        NAME,
        lambda folder: (folder / "imagelabels.mat").is_file(),
        f"{base / 'imagelabels.mat'}, setid.mat and jpg/ beside it (root = the folder 102flowers.tgz extracts "
        "into, holding the two .mat files), or flowers-102/ inside it",
        ("flowers-102",),
    )


def _labels(path: Path, problems: list[Problem]) -> list[int | None]:
    """The class of every image number (position 0 is image 1); None where it is not 1..102."""
    labels: list[int | None] = []
    for number, value in enumerate(load_mat_variables(path, ("labels",), NAME)["labels"], start=1):
        try:
            label = as_int(value)
        except ValueError:
            label = None
        if label is None or not 1 <= label <= NUM_CLASSES:
            problems.append(
                Problem(str(path), f"image {number}: label {shown(value)} is out of range (1..{NUM_CLASSES})")
            )
            label = None
        labels.append(label)
    return labels


def index_flowers(root: str | Path) -> DatasetIndex:
    """Read Flowers-102's ``imagelabels.mat`` and ``setid.mat`` into a :class:`DatasetIndex`."""
    base = find_flowers_root(root)
    problems: list[Problem] = []
    label_path, setid_path = base / "imagelabels.mat", base / "setid.mat"
    labels = _labels(label_path, problems)
    setid = load_mat_variables(setid_path, tuple(_SPLITS.values()), NAME)
    numbers: dict[str, list[tuple[int, int]]] = {}
    for split, key in _SPLITS.items():
        numbers[split] = []
        for position, value in enumerate(setid[key], start=1):
            try:
                number = as_int(value)
            except ValueError:
                number = 0
            if not 1 <= number <= len(labels):
                problems.append(
                    Problem(
                        str(setid_path),
                        f"{key} entry {position}: image {shown(value)} is not one of the {len(labels)} images "
                        "of imagelabels.mat",
                    )
                )
            elif labels[number - 1] is not None:
                numbers[split].append((position, number))
    used = sorted({labels[n - 1] for entries in numbers.values() for _, n in entries})
    class_index = {c: label for label, c in enumerate(used)}
    splits = {
        split: [
            Record(
                base / "jpg" / f"image_{n:05d}.jpg",
                class_index[labels[n - 1]],
                None,
                str(n),
                str(setid_path),
                f"{_SPLITS[split]} entry {position}",
            )
            for position, n in entries
        ]
        for split, entries in numbers.items()
    }
    classes = [f"{c:03d}" for c in used]
    sources = [(str(label_path), f"label {c}") for c in used]
    taxonomy = [{"id": str(c)} for c in used]
    return DatasetIndex(
        "flowers102", base, classes, splits, False, problems, class_sources=sources, taxonomy=taxonomy
    )


class Flowers102(FGVCDataset):
    """Oxford Flowers-102 with its official train / val / test splits (no boxes).

    Args:
        root: the folder holding ``jpg/``, ``imagelabels.mat`` and ``setid.mat`` (or ``flowers-102/``).
        split: ``train``, ``val`` (the official ones), ``test`` or ``trainval`` (train + val).

    The other options (``transform``, ``val_fraction``, ``seed``, ``skip_unreadable``, ``max_pixels``,
    ``decode_size``, ``zero_shot``) are those of :class:`elope.data.base.FGVCDataset` (``val_fraction`` is
    unused: the split is the dataset's).
    """

    build_index = staticmethod(index_flowers)
