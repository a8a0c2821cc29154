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
    "INAT_SPECIES",
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


#: (id, name, supercategory, kingdom, phylum, class, order, family, genus) of the fake iNaturalist species
INAT_SPECIES = [
    (0, "Abies concolor", "Plantae", "Plantae", "Tracheophyta", "Pinopsida", "Pinales", "Pinaceae", "Abies"),
    (1, "Turdus migratorius", "Aves", "Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus"),
    (
        2,
        "Danaus plexippus",
        "Insecta",
        "Animalia",
        "Arthropoda",
        "Insecta",
        "Lepidoptera",
        "Nymphalidae",
        "Danaus",
    ),
]
_RANK_NAMES = ("kingdom", "phylum", "class", "order", "family", "genus")


def _inat_category(year: int, species: tuple) -> dict:
    cid, name, supercategory, *ranks = species
    category = {"id": cid, "name": name, "supercategory": supercategory}
    if year == 2018:  # names obfuscated in the competition's files; categories.json has them
        category["name"] = f"obfuscated{cid * 7919:08x}"
    if year == 2021:
        taxonomy = dict(zip(_RANK_NAMES, ranks))
        category.update(taxonomy, specific_epithet=name.split()[1], common_name=f"common {name}")
        category["image_dir_name"] = f"{cid:05d}_" + "_".join([*ranks, name.split()[1]])
    return category


def _inat_file(year: int, split: str, species: tuple, n: int) -> str:
    cid, name, supercategory, *_ = species
    token = uuid.UUID(int=n * 104729 + year).hex
    if year == 2017:
        return f"train_val_images/{supercategory}/{name}/{token}.jpg"
    if year == 2018:
        return f"train_val2018/{supercategory}/{cid}/{token}.jpg"
    return f"{split}/{_inat_category(2021, species)['image_dir_name']}/{uuid.UUID(hex=token)}.jpg"


def make_fake_inat(
    root: Path,
    year: int,
    train_per_class: int = 4,
    val_per_class: int = 2,
    image_size: tuple[int, int] = (48, 32),
) -> Path:
    """One iNaturalist year's layout directly under ``root`` (the JSON files beside the image folders).

    The species of ``INAT_SPECIES`` (category ids 0..2, listed in the JSON in reverse order; labels 0..2).
    Image ``n`` (1-based, training images class by class, then validation ones) has the id ``n``. 2017: the
    Aves images (label 1) have the box ``[n, 2, 10, 6]`` (pixel edges ``(n, 2, n + 10, 8)``): the training
    ones in ``train_2017_bboxes.json`` (image 5 also with a smaller second box), the validation ones in
    ``val2017.json`` itself. 2018: the JSON files name the species obfuscated; ``categories.json`` holds the names and the taxonomy.
    """
    names = {2017: ("train2017.json", "val2017.json"), 2018: ("train2018.json", "val2018.json")}
    files = names.get(year, ("train.json", "val.json"))
    categories = [_inat_category(year, s) for s in reversed(INAT_SPECIES)]
    n = 0
    for split, per_class, json_name in (
        ("train", train_per_class, files[0]),
        ("val", val_per_class, files[1]),
    ):
        images, annotations, boxes = [], [], []
        for label, species in enumerate(INAT_SPECIES):
            for _ in range(per_class):
                n += 1
                file_name = _inat_file(year, split, species, n)
                write_image(root / file_name, image_size, CLASS_COLOURS[label])
                images.append(
                    {"id": n, "file_name": file_name, "width": image_size[0], "height": image_size[1]}
                )
                annotation = {"id": n, "image_id": n, "category_id": species[0]}
                if year == 2017 and label == 1:
                    box = {"id": n, "image_id": n, "category_id": 1, "bbox": [n, 2, 10, 6], "area": 60}
                    if split == "val":
                        annotation = box
                    else:
                        boxes += [box] + ([{**box, "bbox": [1, 1, 3, 3]}] if n == 5 else [])
                annotations.append(annotation)
        content = {
            "info": {"year": year},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (root / json_name).write_text(json.dumps(content))
        if year == 2017 and split == "train":
            box_content = {"images": images, "annotations": boxes, "categories": categories}
            (root / "train_2017_bboxes.json").write_text(json.dumps(box_content))
    if year == 2018:
        full = [{"id": s[0], "name": s[1], **dict(zip(_RANK_NAMES, s[3:]))} for s in INAT_SPECIES]
        (root / "categories.json").write_text(json.dumps(full))
    return root


def make_fake_flowers(
    root: Path, per_split: tuple[int, int, int] = (2, 2, 2), image_size: tuple[int, int] = (40, 30)
) -> Path:
    """Oxford Flowers-102 layout directly under ``root``; returns it.

    Three classes with the labels 1, 2 and 3 in ``imagelabels.mat``; images are numbered in shuffled class
    order (image ``n`` has label ``(n * 2) % 3 + 1``, as the real set mixes classes); ``setid.mat`` gives each
    class ``per_split`` = (train, val, test) images, in that order.
    """
    total = 3 * sum(per_split)
    labels = [(n * 2) % 3 + 1 for n in range(1, total + 1)]
    for n, label in enumerate(labels, start=1):
        write_image(root / "jpg" / f"image_{n:05d}.jpg", image_size, CLASS_COLOURS[label - 1])
    ids: dict[str, list[int]] = {"trnid": [], "valid": [], "tstid": []}
    for label in (1, 2, 3):
        numbers = [n for n, lab in enumerate(labels, start=1) if lab == label]
        for key, count in zip(ids, per_split):
            ids[key] += numbers[:count]
            numbers = numbers[count:]
    scipy.io.savemat(root / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    scipy.io.savemat(root / "setid.mat", {k: np.array([sorted(v)], dtype=np.uint16) for k, v in ids.items()})
    return root


#: (breed as the image names spell it, class id, species 1 cat / 2 dog, breed id within the species)
PET_BREEDS = [("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1), ("Bengal", 6, 1, 2)]


def make_fake_pets(
    root: Path, trainval_per_class: int = 4, test_per_class: int = 2, image_size: tuple[int, int] = (48, 36)
) -> Path:
    """Oxford-IIIT Pet layout directly under ``root`` (``images/``, ``annotations/``); returns it.

    The breeds of ``PET_BREEDS`` (class ids 1, 2, 6: labels 0, 1, 2). Image ``<breed>_<k>`` (k from 1, trainval
    first) of the ``n``-th trainval image overall has the head box ``xmin = n, ymin = 3, xmax = n + 12,
    ymax = 20`` in ``annotations/xmls/<name>.xml`` (pixel edges ``(n - 1, 2, n + 12, 20)``); test images
    have none, as in the real set.
    """
    lists: dict[str, list[str]] = {"trainval.txt": [], "test.txt": []}
    n = 0
    for c, (breed, class_id, species, breed_id) in enumerate(PET_BREEDS):
        for k in range(1, trainval_per_class + test_per_class + 1):
            name = f"{breed}_{k}"
            write_image(root / "images" / f"{name}.jpg", image_size, CLASS_COLOURS[c])
            split = "trainval.txt" if k <= trainval_per_class else "test.txt"
            lists[split].append(f"{name} {class_id} {species} {breed_id}")
            if split == "trainval.txt":
                n += 1
                xml = root / "annotations" / "xmls" / f"{name}.xml"
                xml.parent.mkdir(parents=True, exist_ok=True)
                xml.write_text(_voc_xml("OXIIIT", f"{name}.jpg", image_size, [(n, 3, n + 12, 20)]))
    for file, lines in lists.items():
        (root / "annotations" / file).write_text("\n".join(lines) + "\n")
    return root
