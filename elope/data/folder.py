"""Your own images in class folders::

    root/train/<class>/*.jpg
    root/val/<class>/*.jpg      (optional: when present it is the validation split)
    root/test/<class>/*.jpg

Classes are the sub-folders of ``train/`` in sorted order (as ``torchvision.datasets.ImageFolder``);
``val/`` and ``test/`` must not hold classes that ``train/`` lacks, so a label never silently changes
meaning between splits. Files are found recursively below each class folder by
:func:`elope.data.files.walk_images` and kept when their extension is one of
:data:`elope.data.files.IMAGE_EXTENSIONS` (every format this Pillow reads, the set ``elope predict`` reads
too); hidden files and folders are ignored; links are followed, and a folder reached a second time (a link
loop) is reported and read once. A file that looks like an image but cannot be read as one (a FIFO, a
broken link, a ``.heic`` without its plugin) is reported; other files (``notes.txt``) are left alone.
There are no boxes.
"""

from __future__ import annotations

import os
from pathlib import Path

from .annotations import DatasetIndex, Problem, Record
from .base import FGVCDataset
from .errors import DatasetNotFoundError
from .files import walk_images

__all__ = ["ImageFolderDataset", "index_folder"]

NAME = "image folder"


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(
        entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith(".")
    )


def _images(class_dir: Path, problems: list[Problem]) -> list[Path]:
    """Image files below ``class_dir``; a file that looks like an image but cannot be read is a problem."""
    found, skipped = walk_images(class_dir)
    problems += [Problem(s.path, s.reason) for s in skipped if s.problem]
    return found


def index_folder(root: str | Path) -> DatasetIndex:
    """Walk ``root/{train,val,test}/<class>/`` into a :class:`DatasetIndex` (no image is opened)."""
    root = Path(root).expanduser()
    for required in ("train", "test"):
        if not (root / required).is_dir():
            raise DatasetNotFoundError(
                f"{NAME}: expected the folder {root / required} with one sub-folder of images per class "
                f"(root/train/<class>/*.jpg, root/test/<class>/*.jpg, optionally root/val/<class>/*.jpg).",
                str(root / required),
            )
    classes = _class_dirs(root / "train")
    if not classes:
        raise DatasetNotFoundError(f"{NAME}: {root / 'train'} has no class sub-folders.", str(root / "train"))
    class_index = {name: i for i, name in enumerate(classes)}
    problems: list[Problem] = []
    splits: dict[str, list[Record]] = {}
    for split in ("train", "val", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        records: list[Record] = []
        for name in _class_dirs(split_dir):
            if name not in class_index:
                problems.append(
                    Problem(str(split_dir / name), f"class folder {name!r} is not in {root / 'train'}")
                )
                continue
            images = _images(split_dir / name, problems)
            if not images and split == "train":
                problems.append(Problem(str(split_dir / name), "class folder holds no images"))
            records += [Record(path, class_index[name], None, str(path.relative_to(root))) for path in images]
        splits[split] = records
    sources = [(str(root / "train" / name), "") for name in classes]
    return DatasetIndex("folder", root, classes, splits, False, problems, class_sources=sources)


class ImageFolderDataset(FGVCDataset):
    """Images in ``root/{train,val,test}/<class>/`` folders.

    Args:
        root: the folder holding ``train/`` and ``test/`` (and optionally ``val/``).
        split: ``train``, ``val``, ``test`` or ``trainval``. With ``val/`` present, ``train``/``val`` are
            those folders and ``trainval`` their union; without it ``trainval`` is ``train/`` and
            ``train``/``val`` are carved from it (``val_fraction``, ``seed``).
        transform: see :class:`elope.data.base.FGVCDataset`.
        skip_unreadable: see :class:`elope.data.base.FGVCDataset`.
        max_pixels: see :class:`elope.data.base.FGVCDataset`.
        decode_size: see :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_folder)
