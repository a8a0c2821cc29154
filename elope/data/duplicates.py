"""Entries of a dataset that are one image: the same file, or the same bytes (``docs/reliability.md``).

Names are not enough to tell: a test image that is a link to a training image, or a byte-for-byte copy of
it under another name, is a train/test leak all the same, and one file listed under two ids (or two class
folders) counts twice or carries two labels. Two checks compare what the entries *are*:

* :func:`same_file_problems`: entries whose files are one file (``os.stat``'s device and inode, so links
  and hard links count; a missing file by its normalised path). The readers run it, so ``train`` and
  ``evaluate`` refuse such a dataset as ``data check`` does, at the cost of one ``stat`` per image.
* :func:`same_content_problems`: entries whose files hold the same bytes (SHA-256 of each file, which
  ``data check`` computes while it decodes every image anyway).

Each pair is one :class:`Problem` of the list file that names the second entry (with both entries' lines),
or of the image itself where no list file names it (an image folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

from .names import class_name_key, class_name_problem
from .records import Problem, Record

__all__ = ["class_name_problems", "file_identity", "same_content_problems", "same_file_problems"]

Entry = tuple[str, Record]  # (split, record)


def file_identity(path: str | os.PathLike[str]) -> Hashable:
    """What makes two paths one file: device and inode (links resolved), else the normalised path."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return ("path", os.path.normpath(path))
    return (status.st_dev, status.st_ino)


def _entries(splits: Mapping[str, Sequence[Record]]) -> list[Entry]:
    """Every record once per split the dataset defines (FGVC-Aircraft's ``trainval`` list repeats its
    ``train`` and ``val`` lists, which are compared with it by the reader: left out here)."""
    return [
        (split, record)
        for split, records in splits.items()
        if not (split == "trainval" and "train" in splits)
        for record in records
    ]


def _lines(*records: Record) -> str:
    named = [f"{Path(r.source).name} {r.where}" for r in records if r.source and r.where]
    return f" ({', '.join(named)})" if named else ""


def _pair_problem(first: Entry, other: Entry, how: str, classes: Sequence[str]) -> Problem:
    """The problem of ``other`` being the image of ``first`` (``how``: what makes them one image)."""
    (s1, r1), (s2, r2) = first, other
    lines = _lines(r1, r2)
    if (s1 == "test") != (s2 == "test"):
        train, test = (r1, r2) if s2 == "test" else (r2, r1)
        what = (
            f"listed as a training image (id {train.key}) and as a test image (id {test.key}): a train/test "
            f"leak{lines}; list each image in one split"
        )
    elif s1 != s2:
        what = (
            f"listed in {s1} (id {r1.key}) and in {s2} (id {r2.key}): validation would score an image it "
            f"trains on{lines}; list each image in one split"
        )
    elif r1.label != r2.label:
        what = (
            f"listed twice in {s1}, as id {r1.key} of class {classes[r1.label]!r} and as id {r2.key} of "
            f"class {classes[r2.label]!r}{lines}: one picture under two labels; keep the right one"
        )
    else:
        what = (
            f"listed twice in {s1}, as id {r1.key} and as id {r2.key}{lines}: it counts twice; list it once"
        )
    return Problem(r2.source or str(r2.path), how + what)


def _pairs(entries: list[Entry], key: Callable[[Record], Hashable]) -> list[tuple[Entry, Entry]]:
    """``(first entry, later entry)`` for every entry whose key an earlier entry has."""
    first: dict[Hashable, Entry] = {}
    pairs = []
    for entry in entries:
        k = key(entry[1])
        if k in first:
            pairs.append((first[k], entry))
        else:
            first[k] = entry
    return pairs


def same_file_problems(splits: Mapping[str, Sequence[Record]], classes: Sequence[str]) -> list[Problem]:
    """Entries whose files are one file: listed twice (under two ids, two labels) or in two splits."""
    problems = []
    for first, other in _pairs(_entries(splits), lambda r: file_identity(r.path)):
        p1, p2 = first[1].path, other[1].path
        same = os.path.normpath(p1) == os.path.normpath(p2)
        how = f"{p2}: " if same else f"{p2} and {p1} are one file (a link): "
        problems.append(_pair_problem(first, other, how, classes))
    return problems


def same_content_problems(
    splits: Mapping[str, Sequence[Record]], classes: Sequence[str], digests: Mapping[Path, str]
) -> list[Problem]:
    """Entries whose files are different files with the same bytes (``digests``: path -> SHA-256; a path
    without one, unreadable, is left out). One file under two entries is :func:`same_file_problems`'s."""
    files: dict[Hashable, Entry] = {}  # one entry per file: the first
    for entry in _entries(splits):
        if entry[1].path in digests:
            files.setdefault(file_identity(entry[1].path), entry)
    problems = []
    for first, other in _pairs(list(files.values()), lambda r: digests[r.path]):
        how = f"{other[1].path} is a byte-for-byte copy of {first[1].path}: "
        problems.append(_pair_problem(first, other, how, classes))
    return problems


def _source(sources: Sequence[tuple[str, str]], label: int, root: str | os.PathLike[str]) -> tuple[str, str]:
    return sources[label] if label < len(sources) else (str(root), f"class {label}")


def class_name_problems(
    classes: Sequence[str], sources: Sequence[tuple[str, str]], root: str | os.PathLike[str]
) -> list[Problem]:
    """Class names that are not usable (:func:`elope.data.names.class_name_problem`), and two classes with
    one name (:func:`elope.data.names.class_name_key`). ``sources[label]`` is ``(file, where)``, the list
    file entry that names the class (``classes.txt``, ``line 3``); the dataset's root where it is missing."""
    problems = []
    first: dict[str, int] = {}
    for label, name in enumerate(classes):
        file, where = _source(sources, label, root)
        prefix = f"{where}: " if where else ""
        if (problem := class_name_problem(name)) is not None:
            problems.append(Problem(file, f"{prefix}class name {problem}; give the class a name that prints"))
            continue
        key = class_name_key(name)
        if key not in first:
            first[key] = label
            continue
        other_file, other_where = _source(sources, first[key], root)
        at = " ".join(part for part in (Path(other_file).name, other_where) if part)
        if classes[first[key]] != name:  # the same name written differently: show how
            at = f"{at}; {ascii(classes[first[key]])[1:-1]} and {ascii(name)[1:-1]}".lstrip("; ")
        problems.append(
            Problem(
                file,
                f"{prefix}class {name!r} has the name of class {classes[first[key]]!r} ({at}): two classes "
                "with one name make predictions ambiguous and per-class metrics wrong; give each class its "
                "own name",
            )
        )
    return problems
