"""Tiny fake trees of the datasets the field uses beside the paper's three (NABirds, Stanford Dogs,
iNaturalist 2017 / 2018 / 2021, Oxford Flowers-102, Oxford-IIIT Pets), each in its real on-disk layout.

As in fake_datasets.py, every image is a solid colour that encodes its label (``CLASS_COLOURS[label]``), and
box values follow formulas documented per function.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import scipy.io
from fake_datasets import CLASS_COLOURS, write_image

__all__ = [
    "DOG_BREEDS",
    "NABIRDS_CLASSES",
    "PET_BREEDS",
    "make_fake_dogs",
    "make_fake_flowers",
    "make_fake_inat",
    "make_fake_nabirds",
    "make_fake_pets",
]

#: (class id, name, parent id) of the fake NABirds taxonomy: sparse ids, inner nodes, one leaf without images
NABIRDS_CLASSES = [
    (0, "Birds", None),
    (1, "Perching Birds", 0),
    (2, "Cardinals, Grosbeaks, and Allies", 1),
    (295, "Rose-breasted Grosbeak (Adult Male)", 2),
    (296, "Rose-breasted Grosbeak (Female/Immature)", 2),
    (313, "Northern Cardinal (Adult Male)", 2),
    (400, "Unseen Leaf", 1),
]
NABIRDS_LEAVES = [295, 296, 313]


def make_fake_nabirds(
    root: Path, train_per_class: int = 4, test_per_class: int = 2, image_size: tuple[int, int] = (48, 32)
) -> Path:
    """NABirds layout under ``root/nabirds``; returns ``root``.

    Images of the leaves ``NABIRDS_LEAVES`` (labels 0, 1, 2 in id order; class 400 has no image), class by
    class, training images first. Image ``n`` (1-based over the list) has a UUID id, the file
    ``<class id:04d>/<uuid hex>.jpg`` and the box ``x = n, y = 2, width = 10, height = 6``.
    """
    base = root / "nabirds"
    lines: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "boxes")}
    n = 0
    for label, class_id in enumerate(NABIRDS_LEAVES):
        for k in range(train_per_class + test_per_class):
            n += 1
            image_id = uuid.UUID(int=n * 7919 + 12345)
            name = f"{class_id:04d}/{image_id.hex}.jpg"
            write_image(base / "images" / name, image_size, CLASS_COLOURS[label])
            lines["images"].append(f"{image_id} {name}")
            lines["labels"].append(f"{image_id} {class_id}")
            lines["split"].append(f"{image_id} {int(k < train_per_class)}")
            lines["boxes"].append(f"{image_id} {n} 2 10 6")
    files = {
        "images.txt": lines["images"],
        "image_class_labels.txt": lines["labels"],
        "train_test_split.txt": lines["split"],
        "bounding_boxes.txt": lines["boxes"],
        "classes.txt": [f"{i} {name}" for i, name, _ in NABIRDS_CLASSES],
        "hierarchy.txt": [f"{i} {parent}" for i, _, parent in NABIRDS_CLASSES if parent is not None],
    }
    for name, content in files.items():
        (base / name).write_text("\n".join(content) + "\n")
    return root
