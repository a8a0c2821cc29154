"""Tiny fake datasets in each real on-disk layout, written by tests (no network, no real data).

Every image is a solid colour that encodes its label (``CLASS_COLOURS[label]``), so a test can tell from
the pixels that an image arrived with its own label. Each file still holds its own bytes (its path in a
JPEG comment): ``data check`` reports two files with the same bytes as copies of one image. Box values follow simple formulas documented per
function, so tests can compare against hand-computed conversions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

__all__ = [
    "AIRCRAFT_CLASSES",
    "AIRCRAFT_FAMILIES",
    "AIRCRAFT_MANUFACTURERS",
    "AIRCRAFT_VARIANTS",
    "BANNER_COLOUR",
    "CLASS_COLOURS",
    "make_fake_aircraft",
    "make_fake_cars",
    "make_fake_cub",
    "make_fake_folder",
    "write_image",
]

CLASS_COLOURS = [
    (220, 20, 20),
    (20, 200, 20),
    (20, 20, 220),
    (220, 220, 20),
    (20, 220, 220),
    (220, 20, 220),
    (120, 120, 120),
    (250, 150, 50),
]
BANNER_COLOUR = (255, 255, 255)


def write_image(path: Path, size: tuple[int, int], colour: Sequence[int], banner: int = 0) -> Path:
    """Write a solid-colour JPEG of ``size`` (width, height); ``banner`` white rows at the bottom; the last
    three parts of ``path`` in a JPEG comment (the pixels of two images may be equal, their bytes are not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)
    pixels[:] = colour
    if banner:
        pixels[-banner:] = BANNER_COLOUR
    comment = "/".join(path.parts[-3:]).encode()
    # 4:4:4: no colour bleed
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, subsampling=0, comment=comment)
    return path


def make_fake_cub(
    root: Path,
    num_classes: int = 3,
    train_per_class: int = 4,
    test_per_class: int = 2,
    image_size: tuple[int, int] = (48, 32),
    boxes: bool = True,
) -> Path:
    """CUB-200-2011 layout under ``root/CUB_200_2011``; returns ``root``.

    Images are listed class by class, training images first; image id ``i`` (1-based) has the box
    ``x = i, y = 2.5, width = 10, height = 6.25`` in bounding_boxes.txt, i.e. x1,y1,x2,y2 =
    ``(i, 2.5, i + 10, 8.75)``. Class ``c`` (1-based) is named ``{c:03d}.Class_{c}``.
    """
    base = root / "CUB_200_2011"
    images, labels, split, box_lines = [], [], [], []
    for c in range(1, num_classes + 1):
        folder = f"{c:03d}.Class_{c}"
        for k in range(train_per_class + test_per_class):
            image_id = len(images) + 1
            name = f"{folder}/Class_{c}_{k + 1:04d}.jpg"
            write_image(base / "images" / name, image_size, CLASS_COLOURS[c - 1])
            images.append(f"{image_id} {name}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {int(k < train_per_class)}")
            box_lines.append(f"{image_id} {float(image_id)} 2.5 10.0 6.25")
    files = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "classes.txt": [f"{c} {c:03d}.Class_{c}" for c in range(1, num_classes + 1)],
    }
    if boxes:
        files["bounding_boxes.txt"] = box_lines
    for name, lines in files.items():
        (base / name).write_text("\n".join(lines) + "\n")
    return root


def _struct_array(records: list[dict]) -> np.ndarray:
    fields = list(records[0])
    array = np.empty(len(records), dtype=[(f, object) for f in fields])
    for i, record in enumerate(records):
        for field in fields:
            array[i][field] = record[field]
    return array


def make_fake_cars(
    root: Path,
    num_classes: int = 3,
    train_per_class: int = 4,
    test_per_class: int = 2,
    image_size: tuple[int, int] = (60, 40),
) -> Path:
    """Stanford Cars devkit layout directly under ``root`` (as torchvision's ``stanford_cars/``); returns it.

    Annotation ``n`` (1-based, per split) of file ``{n:05d}.jpg`` has the 1-based inclusive box
    ``bbox_x1 = n, bbox_y1 = 2, bbox_x2 = n + 20, bbox_y2 = 30`` (pixel edges: ``(n - 1, 1, n + 20, 30)``),
    stored like the real devkit as 1×1 arrays: bbox_x1/bbox_y1 and class as uint8, bbox_x2/bbox_y2 as
    uint16. Images are listed class by class.
    """
    (root / "devkit").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        root / "devkit" / "cars_meta.mat",
        {
            "class_names": np.array(
                [[f"Make Model {c} 2012" for c in range(1, num_classes + 1)]], dtype=object
            )
        },
    )
    for split, per_class, mat in (
        ("train", train_per_class, root / "devkit" / "cars_train_annos.mat"),
        ("test", test_per_class, root / "cars_test_annos_withlabels.mat"),
    ):
        records = []
        for c in range(1, num_classes + 1):
            for _ in range(per_class):
                n = len(records) + 1
                fname = f"{n:05d}.jpg"
                write_image(root / f"cars_{split}" / fname, image_size, CLASS_COLOURS[c - 1])
                records.append(
                    {
                        "bbox_x1": np.array([[n]], dtype=np.uint8),
                        "bbox_y1": np.array([[2]], dtype=np.uint8),
                        "bbox_x2": np.array([[n + 20]], dtype=np.uint16),
                        "bbox_y2": np.array([[30]], dtype=np.uint16),
                        "class": np.array([[c]], dtype=np.uint8),
                        "fname": np.array([fname]),
                    }
                )
        scipy.io.savemat(mat, {"annotations": _struct_array(records)[None, :]})
        if split == "test":  # the devkit's own test annotations, without labels
            unlabelled = [{k: v for k, v in r.items() if k != "class"} for r in records]
            scipy.io.savemat(
                root / "devkit" / "cars_test_annos.mat", {"annotations": _struct_array(unlabelled)[None, :]}
            )
    return root


#: (variant, family, manufacturer) of the fake aircraft classes: names with spaces and slashes, and
#: two variants sharing a manufacturer so that labels differ between annotation levels.
AIRCRAFT_CLASSES = [
    ("707-320", "Boeing 707", "Boeing"),
    ("A300B4", "A300", "Airbus"),
    ("F/A-18", "F/A-18", "McDonnell Douglas"),
    ("DC-9-30", "DC-9", "McDonnell Douglas"),
    ("Cessna 172", "Cessna 172", "Cessna"),
]
AIRCRAFT_VARIANTS = [v for v, _, _ in AIRCRAFT_CLASSES]
AIRCRAFT_FAMILIES = [f for _, f, _ in AIRCRAFT_CLASSES]
AIRCRAFT_MANUFACTURERS = list(dict.fromkeys(m for _, _, m in AIRCRAFT_CLASSES))


def make_fake_aircraft(root: Path, per_split: int = 2, image_size: tuple[int, int] = (72, 60)) -> Path:
    """FGVC-Aircraft 2013b layout under ``root/fgvc-aircraft-2013b/data``; returns ``root``.

    The five classes of ``AIRCRAFT_CLASSES``, ``per_split`` images per class in each of train, val and
    test (trainval = train + val). Image ``j`` (0-based over the whole set, train then val then test,
    class by class) has the id ``f"{j + 1:07d}"`` (leading zeros) and the 1-based inclusive box
    ``xmin = j + 1, ymin = 3, xmax = j + 31, ymax = H``, whose bottom reaches into the 20-pixel banner:
    pixel edges ``(j, 2, j + 31, H)`` before the banner crop and ``(j, 2, j + 31, H - 20)`` after it.
    Images are the class colour with a white banner of 20 rows at the bottom.
    """
    width, height = image_size
    if width < 31 + 3 * len(AIRCRAFT_CLASSES) * per_split:
        raise ValueError("image_size too narrow for the box formula")
    base = root / "fgvc-aircraft-2013b" / "data"
    base.mkdir(parents=True, exist_ok=True)
    (base / "variants.txt").write_text("\n".join(AIRCRAFT_VARIANTS) + "\n")
    (base / "families.txt").write_text("\n".join(AIRCRAFT_FAMILIES) + "\n")
    (base / "manufacturers.txt").write_text("\n".join(AIRCRAFT_MANUFACTURERS) + "\n")
    lines: dict[str, list[str]] = {"images_box.txt": []}
    j = 0
    for split in ("train", "val", "test"):
        for v, names in enumerate(AIRCRAFT_CLASSES):
            for _ in range(per_split):
                image_id = f"{j + 1:07d}"
                write_image(base / "images" / f"{image_id}.jpg", image_size, CLASS_COLOURS[v], banner=20)
                lines["images_box.txt"].append(f"{image_id} {j + 1} 3 {j + 31} {height}")
                lines.setdefault(f"images_{split}.txt", []).append(image_id)
                for level, name in zip(("variant", "family", "manufacturer"), names):
                    lines.setdefault(f"images_{level}_{split}.txt", []).append(f"{image_id} {name}")
                    if split in ("train", "val"):
                        lines.setdefault(f"images_{level}_trainval.txt", []).append(f"{image_id} {name}")
                j += 1
    for name, content in lines.items():
        (base / name).write_text("\n".join(content) + "\n")
    return root


def make_fake_folder(
    root: Path,
    classes: Sequence[str] = ("alpha", "beta", "gamma"),
    counts: dict[str, int] | None = None,
    image_size: tuple[int, int] = (32, 24),
) -> Path:
    """``root/<split>/<class>/img_<k>.jpg`` for the splits in ``counts`` (default train 4, test 2)."""
    counts = counts or {"train": 4, "test": 2}
    for split, per_class in counts.items():
        for c, name in enumerate(classes):
            for k in range(per_class):
                write_image(root / split / name / f"img_{k}.jpg", image_size, CLASS_COLOURS[c])
    return root
