"""What ``elope data synth --force`` deletes: only the files an earlier ``write_synthetic`` wrote.

A synthetic set is ``OUT/elope_synthetic.json`` plus ``OUT/CUB_200_2011/`` (five annotation files and the
images that its ``images.txt`` lists). ``--force`` deletes exactly those files, then the folders they leave
empty; any other file in the folder (notes, images the user added) is kept, and the command names it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

__all__ = ["remove_written", "written_files"]

_METADATA = "elope_synthetic.json"
#: The name ``write_synthetic`` gives an image: ``001.cyan_black_plain/cyan_black_plain_0001.jpg``. An image
#: the user added to the set (and to its ``images.txt``), or a real CUB tree beside a copied metadata file,
#: has other names and is kept (a fresh sweep after the writer, reliability S-W13).
_GENERATED = re.compile(r"[0-9]{3}\.([A-Za-z0-9_]+)/\1_[0-9]{4}\.jpg")
_ANNOTATIONS = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)


def written_files(out: str | os.PathLike[str]) -> list[Path]:
    """The files of the synthetic set in ``out`` that exist: its metadata, its annotation files and the
    images its ``images.txt`` lists under a name the generator gives."""
    out = Path(out)
    base = out / "CUB_200_2011"
    files = [out / _METADATA, *(base / name for name in _ANNOTATIONS)]
    try:
        lines = (base / "images.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        name = line.partition(" ")[2].strip()
        if _GENERATED.fullmatch(name):  # a name the generator gives; never one the user listed there
            files.append(base / "images" / name)
    return [f for f in files if f.is_file() and not f.is_symlink()]


def remove_written(out: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """Delete the files :func:`written_files` lists and the folders left empty; returns ``(deleted, kept)``:
    kept are the other files under ``out/CUB_200_2011`` (never deleted)."""
    out = Path(out)
    base = out / "CUB_200_2011"
    deleted = written_files(out)
    for path in deleted:
        path.unlink()
    for dirpath, _, _ in os.walk(base, topdown=False):  # deepest first
        with contextlib.suppress(OSError):  # not empty: it holds a file that is kept
            os.rmdir(dirpath)
    kept = sorted(Path(d) / name for d, _, names in os.walk(base) for name in names) if base.exists() else []
    return deleted, kept
