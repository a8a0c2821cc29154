"""The checks behind ``elope data check``: counts per split and every problem a dataset has.

Problems found: malformed annotation lines (file and line number), labels out of range, ids present in
one annotation file and not another, class names that do not print or that two classes share, one file
under two entries (all reported by the readers), plus, image by image: missing files, unreadable or
truncated images (every image is decoded), images over the pixel cap, boxes outside the image (1 pixel of
tolerance for the datasets' rounding), and two files with the same bytes (a SHA-256 of every file:
:func:`elope.data.duplicates.same_content_problems`), such as a test image copied from a training one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elope.exported import file_sha256

from .annotations import Problem, Record
from .duplicates import same_content_problems
from .errors import ImageLoadError
from .io import DEFAULT_MAX_PIXELS, decode_image, image_dimensions
from .registry import index_dataset
from .shard_check import check_shard_set

__all__ = ["BOX_TOLERANCE", "CheckReport", "box_outside", "check_dataset", "gt_box_problems"]

#: how far (pixels) a box may stick out of its image before it counts as a problem
BOX_TOLERANCE = 1.0


@dataclass
class CheckReport:
    """What ``elope data check`` prints."""

    dataset: str
    root: str
    num_classes: int
    splits: dict[str, dict[str, int]]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: ``{"num_classes", "splits": {split: {"images", "boxes"}}, "problems"}``."""
        return {
            "num_classes": self.num_classes,
            "splits": self.splits,
            "problems": [p.to_dict() for p in self.problems],
        }


def box_outside(box: Sequence[float], width: float, height: float) -> bool:
    """Whether a box ``x1, y1, x2, y2`` sticks out of a ``width`` × ``height`` image by more than
    :data:`BOX_TOLERANCE` pixels: the one such check (``data check`` and ``evaluate`` report it)."""
    x1, y1, x2, y2 = box
    t = BOX_TOLERANCE
    return x1 < -t or y1 < -t or x2 > width + t or y2 > height + t


def gt_box_problems(dataset: Any) -> list[dict[str, str]]:
    """Ground-truth boxes that lie outside their image, as ``elope data check`` finds them (1 pixel of
    tolerance; image sizes from the headers; FGVC-Aircraft's banner rows count as part of the image).

    What evaluation does with them (the dataset clamps every box to its image): a box that sticks out is
    *clipped* and used; a box with nothing inside the image becomes empty and is *left out* of
    ``loc_iou50`` / ``mean_map_iou50`` and ``localization`` (``num_boxes`` counts the boxes used). Returns one
    ``{"path", "problem"}`` per such box, reported as ``box_problems``.
    """
    problems = []
    for (path, _), box in zip(dataset.samples, getattr(dataset, "_boxes", [])):
        if box is None:
            continue
        try:
            width, height = image_dimensions(path)
        except (OSError, ValueError):  # unreadable: reported (or skipped) when the image itself is read
            continue
        if not box_outside(box, width, height):
            continue
        x1, y1, x2, y2 = box
        empty = min(x2, width) <= max(x1, 0.0) or min(y2, height) <= max(y1, 0.0)
        what = "nothing of it lies inside: left out of the localization metrics" if empty else "clipped to it"
        problems.append(
            {
                "path": str(path),
                "problem": f"ground-truth box x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} lies outside the "
                f"{width}x{height} image; {what}",
            }
        )
    return problems


def _check_image(
    record: Record, decode: bool, max_pixels: int, read: Callable[[Record], bytes] | None = None
) -> tuple[list[Problem], str | None]:
    """The problems of one image, and the SHA-256 of its bytes (None when it cannot be read); ``read``:
    its bytes come from there instead of its file (an image inside a shard)."""
    path = str(record.path)
    if read is not None:
        try:
            data = read(record)
        except ImageLoadError as error:
            return [Problem(path, f"unreadable image: {error}")], None
        return _check_pixels(record, decode, max_pixels, data), hashlib.sha256(data).hexdigest()
    if not record.path.is_file():
        return [Problem(path, f"image file is missing (image {record.key})")], None
    try:
        digest = file_sha256(record.path)
    except OSError as error:
        return [Problem(path, f"unreadable image: {error.strerror or error}")], None
    return _check_pixels(record, decode, max_pixels), digest


def _check_pixels(record: Record, decode: bool, max_pixels: int, data: bytes | None = None) -> list[Problem]:
    """Decode (or read the header of) one image (``data``: its bytes, else its file); its box must lie
    inside it."""
    path = str(record.path)
    try:
        if decode:
            # Draft mode still reads every byte of a JPEG, so truncation is found, at a fraction of the cost.
            # Boxes refer to the stored pixels, whatever the EXIF orientation: checked against the stored size.
            decoded = decode_image(record.path, max_pixels=max_pixels, draft_size=64, data=data)
            width, height = decoded.stored_size
        else:
            width, height = image_dimensions(record.path, max_pixels=max_pixels, data=data)
    except ImageLoadError as error:
        return [Problem(path, f"unreadable image: {error}")]
    if record.box is None:
        return []
    x1, y1, x2, y2 = record.box
    if box_outside(record.box, width, height):
        return [
            Problem(
                path,
                f"box x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} lies outside the {width}x{height} image",
            )
        ]
    return []


def check_dataset(
    name: str,
    root: str | Path,
    *,
    decode: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int | None = None,
    progress: Any = None,
    **options: Any,
) -> CheckReport:
    """Check a dataset and return counts and problems.

    Args:
        name: as for :func:`elope.data.build_dataset`; ``options`` as well (aircraft:
            ``annotation_level``, ``remove_banner``). ``shards``: a shard set, its shards checked first
            (:mod:`elope.data.shard_check`), then every image read from its shard.
        root: as for :func:`elope.data.build_dataset`.
        decode: decode every image (finds truncated files); ``False`` only reads image headers.
        max_pixels: the decompression-bomb cap used for training.
        threads: threads decoding images (PIL releases the GIL); default ``min(8, cpu count)``.
        progress: optional callable wrapping an iterable (e.g. ``tqdm.tqdm``) for a progress bar.

    Raises:
        DatasetNotFoundError: the dataset cannot be read at all (exit status 2 of ``data check``).
    """
    shard_set = check_shard_set(root, progress) if name == "shards" else None
    index = shard_set.index if shard_set else index_dataset(name, root, **options)
    problems = list(index.problems) + (shard_set.problems if shard_set else [])
    splits = {
        split: {"images": len(records), "boxes": sum(r.box is not None for r in records)}
        for split, records in index.splits.items()
    }
    unique: dict[Path, Record] = {}
    for records in index.splits.values():
        for record in records:
            if shard_set is None or shard_set.readable(record):  # a missing shard is reported once
                unique.setdefault(record.path, record)
    read = shard_set.read if shard_set else None
    threads = threads or min(8, os.cpu_count() or 1)
    digests: dict[Path, str] = {}
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results: Iterable[tuple[list[Problem], str | None]] = pool.map(
                lambda r: _check_image(r, decode, max_pixels, read), unique.values()
            )
            if progress is not None:
                results = progress(results, total=len(unique), desc="checking images", unit="img")
            for path, (found, digest) in zip(unique, results):
                problems.extend(found)
                if digest is not None:
                    digests[path] = digest
    finally:  # the shards' open files, also when a check raises
        if shard_set is not None:
            shard_set.store.close()
    problems += same_content_problems(index.splits, index.classes, digests)
    return CheckReport(name, str(index.root), len(index.classes), splits, problems)
