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


#: (WordNet id, breed) of the fake Stanford Dogs classes, labels 1..3 in the lists
DOG_BREEDS = [("n02085620", "Chihuahua"), ("n02085782", "Japanese_spaniel"), ("n02086240", "Shih-Tzu")]


def _voc_xml(
    folder: str, filename: str, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]
) -> str:
    objects = "".join(
        f"<object><name>dog</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes
    )
    return (
        f"<annotation><folder>{folder}</folder><filename>{filename}</filename><source><database>ImageNet "
        f"database</database></source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth>"
        f"</size><segment>0</segment>{objects}</annotation>"
    )


def make_fake_dogs(
    root: Path, train_per_class: int = 4, test_per_class: int = 2, image_size: tuple[int, int] = (60, 40)
) -> Path:
    """Stanford Dogs layout directly under ``root`` (``Images/``, ``Annotation/``, ``lists/*.mat``); returns it.

    Image ``n`` (1-based over the train list, then over the test list; class by class) is
    ``Images/<wnid>-<breed>/<wnid>_<n>.jpg`` with the VOC box ``xmin = n, ymin = 2, xmax = n + 20, ymax = 30``
    (pixel edges ``(n - 1, 1, n + 20, 30)``); image 1 of each list also holds a smaller second dog.
    """
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        files, annotations, labels = [], [], []
        for c, (wnid, breed) in enumerate(DOG_BREEDS):
            for _ in range(per_class):
                n = len(files) + 1
                name = f"{wnid}-{breed}/{wnid}_{n + (1000 if split == 'test' else 0)}"
                write_image(root / "Images" / f"{name}.jpg", image_size, CLASS_COLOURS[c])
                boxes = [(n, 2, n + 20, 30)] + ([(1, 1, 5, 5)] if n == 1 else [])
                xml = root / "Annotation" / name
                xml.parent.mkdir(parents=True, exist_ok=True)
                xml.write_text(_voc_xml(wnid, name.split("/")[1], image_size, boxes))
                files.append(f"{name}.jpg")
                annotations.append(name)
                labels.append(c + 1)
        (root / "lists").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(
            root / "lists" / f"{split}_list.mat",
            {
                "file_list": np.array(files, dtype=object)[:, None],
                "annotation_list": np.array(annotations, dtype=object)[:, None],
                "labels": np.array(labels, dtype=np.float64)[:, None],
            },
        )
    return root
