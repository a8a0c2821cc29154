"""``write_birds``: the bird family written in the same CUB-200-2011 layout as the critters.

The files, their names and the metadata file (``OUT/elope_synthetic.json``) are those of
:func:`elope.data.synthetic.write_synthetic`, so ``--dataset synthetic --root OUT`` (training,
``elope data check``, ``elope evaluate``) and ``elope data synth --force`` read and replace it alike.
Every image has its own generator, seeded by (seed, split, class, index, 2): the same arguments give the
same bytes (with the same scikit-image photographs, whose digests the metadata records).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from elope import writer
from elope.data.birds.backgrounds import photo_digests
from elope.data.birds.presets import BirdPreset, bird_preset
from elope.data.birds.scene import render_scene, sample_scene
from elope.data.birds.species import Species, species_table
from elope.data.synthetic import METADATA, _check_counts, _fresh_folder, _write_lines, train_counts
from elope.data.synthetic_knobs import checked_frame

__all__ = ["write_birds"]

_SPLIT_CODES = {"train": 0, "test": 1}
_FAMILY_CODE = 2  # keeps the birds' generators apart from the critters' (which have no fifth number)


def _write_images(
    base: Path,
    species: list[Species],
    train: list[int],
    test: int,
    frame: tuple[int, int],
    seed: int,
    preset: BirdPreset,
) -> dict[str, list[str]]:
    """Render and save every image; returns the lines of CUB's per-image annotation files."""
    lines: dict[str, list[str]] = {
        "images.txt": [],
        "image_class_labels.txt": [],
        "train_test_split.txt": [],
        "bounding_boxes.txt": [],
    }
    images = lines["images.txt"]
    for c, spec in enumerate(species):
        folder = f"{c + 1:03d}.{spec.name}"
        writer.make_folder(base / "images" / folder)
        for split, count, offset in (("train", train[c], 0), ("test", test, train[c])):
            for k in range(count):
                rng = np.random.default_rng([seed, _SPLIT_CODES[split], c, k, _FAMILY_CODE])
                rendered = render_scene(sample_scene(rng, preset, frame), spec)
                name = f"{folder}/{spec.name}_{offset + k + 1:04d}.jpg"
                with writer.write_with(base / "images" / name, durable=False) as tmp:
                    rendered.image.save(tmp, format="JPEG", quality=90)
                image_id = len(images) + 1
                x1, y1, x2, y2 = rendered.box
                images.append(f"{image_id} {name}")
                lines["image_class_labels.txt"].append(f"{image_id} {c + 1}")
                lines["train_test_split.txt"].append(f"{image_id} {int(split == 'train')}")
                lines["bounding_boxes.txt"].append(
                    f"{image_id} {x1:.1f} {y1:.1f} {x2 - x1:.1f} {y2 - y1:.1f}"
                )
    return lines


def write_birds(
    out: str | Path,
    classes: int = 20,
    train: int | Sequence[int] = 30,
    test: int = 20,
    size: int = 448,
    seed: int = 0,
    *,
    preset: str = "medium",
    overwrite: bool = False,
    object_scale: tuple[float, float] | None = None,
    aspect: float | None = None,
) -> Path:
    """Write the bird family under ``out/CUB_200_2011`` and return ``out``.

    Args:
        out: destination folder (``build_dataset("synthetic", out, ...)`` reads it back).
        classes: number of species (2..72); any two differ in at least two of their five class parts.
        train: training images per class, or one count per class. test: test images per class.
        size: the frame's longer side in pixels (>= 32; the birds are meant for 224-512 px).
        seed: the same seed and arguments give byte-identical files.
        preset: a preset of :data:`elope.data.birds.presets.BIRD_PRESETS`.
        overwrite: replace a data set written there before by ``write_synthetic`` or this function.
        object_scale: replaces the preset's bird size range (fractions of the frame's longer side).
        aspect: replaces the preset's frame width / height.

    Raises ``ValueError`` for a value out of range and :class:`elope.data.errors.DataError` when
    scikit-image (the backgrounds' photographs) is not installed.
    """
    counts = train_counts(train, classes)
    _check_counts(size, test, seed)
    knobs = bird_preset(preset, scale=object_scale, aspect=aspect)
    frame = checked_frame(size, knobs.aspect)  # the shorter side 32 px at least, as the critters'
    species = species_table(classes, seed)
    digests = photo_digests()  # fails early, before any folder is made, when scikit-image is missing
    out = Path(out).expanduser()
    base = _fresh_folder(out, overwrite)
    lines = _write_images(base, species, counts, test, frame, seed, knobs)
    for name, rows in lines.items():
        _write_lines(base / name, rows)
    _write_lines(base / "classes.txt", [f"{c + 1} {c + 1:03d}.{s.name}" for c, s in enumerate(species)])
    metadata = {
        "generator": "elope.data.birds.write_birds",
        "family": "birds",
        "layout": "CUB-200-2011",
        "args": {
            "classes": classes,
            "train": train if isinstance(train, int) else counts,
            "test": test,
            "size": size,
            "seed": seed,
        },
        "preset": {"name": preset, **knobs.to_dict()},
        "frame": list(frame),
        "backgrounds": {"package": "scikit-image", "photographs": digests},
        "classes": [s.to_dict() for s in species],
    }
    writer.write_text(out / METADATA, json.dumps(metadata, indent=2) + "\n")
    return out
