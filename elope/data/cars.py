"""Stanford Cars (Krause et al. 2013; Table 1: 8144 train / 8041 test images, 196 classes) in the devkit
layout that ``torchvision.datasets.StanfordCars`` reads::

    cars_train/00001.jpg ...
    cars_test/00001.jpg ...
    devkit/cars_meta.mat                 class_names (1×196 cell)
    devkit/cars_train_annos.mat          annotations: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, fname
    cars_test_annos_withlabels.mat       the same for the test images (also accepted in devkit/);
                                         the devkit's own cars_test_annos.mat has no labels

``root`` is the folder holding these, or the folder holding ``stanford_cars/`` with them. Boxes in the
devkit are 1-based and inclusive (``bbox_x1 = 1`` is the first column, ``bbox_x2 = W`` the last), so
x1 = bbox_x1 - 1, y1 = bbox_y1 - 1, x2 = bbox_x2, y2 = bbox_y2 in pixel-edge coordinates. Classes are
1-based; labels are ``class - 1``. Numbers are stored as uint8/uint16 and converted to Python ints
before any arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .annotations import DatasetIndex, Problem, Record, inside_root, require_file
from .base import FGVCDataset
from .errors import DatasetNotFoundError
from .matfile import as_int, load_mat_variables

__all__ = ["StanfordCars", "find_cars_root", "index_cars"]

NAME = "Stanford Cars"
FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
TEST_ANNOS = "cars_test_annos_withlabels.mat"


def find_cars_root(root: str | Path) -> Path:
    """The folder holding ``devkit/cars_meta.mat``: ``root`` or ``root/stanford_cars``."""
    root = Path(root).expanduser()
    for candidate in (root, root / "stanford_cars"):
        if (candidate / "devkit" / "cars_meta.mat").is_file():
            return candidate
    raise DatasetNotFoundError(
        f"{NAME} not found: expected {root / 'devkit' / 'cars_meta.mat'} (root = the folder holding "
        f"cars_train/, cars_test/, devkit/ and {TEST_ANNOS}) or "
        f"{root / 'stanford_cars' / 'devkit' / 'cars_meta.mat'}.",
        str(root),
    )


def _read_annotations(path: Path, images: Path, num_classes: int, problems: list[Problem]) -> list[Record]:
    annotations = load_mat_variables(path, ("annotations",), NAME)["annotations"]
    names = annotations.dtype.names or ()
    missing = [field for field in FIELDS if field not in names]
    if missing:
        raise DatasetNotFoundError(
            f"{NAME}: {path} 'annotations' lacks the field(s) {', '.join(missing)}; expected a struct array "
            f"with {', '.join(FIELDS)} (test labels are only in {TEST_ANNOS}, not in the devkit's cars_test_annos.mat)",
            str(path),
        )
    records: list[Record] = []
    seen: dict[str, int] = {}
    for number, annotation in enumerate(annotations, start=1):
        fname = str(np.asarray(annotation["fname"]).squeeze())
        where = f"annotation {number} ({fname})"
        try:
            x1, y1, x2, y2, class_id = (as_int(annotation[field]) for field in FIELDS[:5])
        except ValueError:
            problems.append(Problem(str(path), f"{where}: bbox_x1..bbox_y2 and class must be integers"))
            continue
        if not fname or fname in seen:
            what = "has no file name" if not fname else f"repeats the file of annotation {seen.get(fname)}"
            problems.append(Problem(str(path), f"{where}: {what}"))
            continue
        seen[fname] = number
        image = inside_root(images, fname, path, where, problems)
        if image is None:
            continue
        if not 1 <= class_id <= num_classes:
            problems.append(
                Problem(
                    str(path),
                    f"{where}: class {class_id} is out of range (cars_meta.mat has 1..{num_classes})",
                )
            )
            continue
        if x2 < x1 or y2 < y1:
            problems.append(
                Problem(str(path), f"{where}: box ({x1}, {y1}, {x2}, {y2}) has x2 < x1 or y2 < y1")
            )
            continue
        box = (x1 - 1.0, y1 - 1.0, float(x2), float(y2))
        records.append(Record(image, class_id - 1, box, fname, str(path), f"annotation {number}"))
    return records


def index_cars(root: str | Path) -> DatasetIndex:
    """Read the Stanford Cars devkit ``.mat`` files into a :class:`DatasetIndex` (no image is opened)."""
    base = find_cars_root(root)
    class_names = load_mat_variables(base / "devkit" / "cars_meta.mat", ("class_names",), NAME)["class_names"]
    classes = [str(np.asarray(name).squeeze()) for name in class_names]
    meta = str(base / "devkit" / "cars_meta.mat")
    class_sources = [(meta, f"class_names entry {i}") for i in range(1, len(classes) + 1)]
    train_annos = require_file(base / "devkit" / "cars_train_annos.mat", NAME, "the training annotations")
    test_annos = next((p for p in (base / TEST_ANNOS, base / "devkit" / TEST_ANNOS) if p.is_file()), None)
    if test_annos is None:
        raise DatasetNotFoundError(
            f"{NAME}: expected the test labels in {base / TEST_ANNOS} (or {base / 'devkit' / TEST_ANNOS}); "
            "the devkit's cars_test_annos.mat has no labels. The file was distributed separately by the "
            "dataset's authors next to cars_test.tgz.",
            str(base / TEST_ANNOS),
        )
    problems: list[Problem] = []
    splits = {
        "train": _read_annotations(train_annos, base / "cars_train", len(classes), problems),
        "test": _read_annotations(test_annos, base / "cars_test", len(classes), problems),
    }
    return DatasetIndex("cars", base, classes, splits, True, problems, class_sources=class_sources)


class StanfordCars(FGVCDataset):
    """Stanford Cars in the devkit layout (no conversion needed).

    Args:
        root: the folder holding ``cars_train/``, ``cars_test/``, ``devkit/`` (or ``stanford_cars/``).
        split: ``train``, ``val``, ``test`` or ``trainval``; Cars has no official validation split, so
            train/val are carved from the training images (``val_fraction``, ``seed``).
        transform: see :class:`elope.data.base.FGVCDataset`.
        skip_unreadable: see :class:`elope.data.base.FGVCDataset`.
        max_pixels: see :class:`elope.data.base.FGVCDataset`.
        decode_size: see :class:`elope.data.base.FGVCDataset`.
    """

    build_index = staticmethod(index_cars)
