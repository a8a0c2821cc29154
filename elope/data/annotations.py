"""Shared pieces of the dataset readers: the index they build and a line-numbered text-table parser.

Readers never raise on a malformed line: they record a :class:`Problem` (file + sentence with the line
number) and go on, so ``elope data check`` can list every problem at once. The dataset classes raise
the first one as an :class:`AnnotationError`. A required file that is missing altogether raises
:class:`DatasetNotFoundError` at once, naming what was expected where.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .duplicates import class_name_problems, same_file_problems
from .errors import AnnotationError, DatasetNotFoundError
from .records import Box, Problem, Record

__all__ = [  # Box, Problem and Record live in elope.data.records; imported from here as well
    "Box",
    "DatasetIndex",
    "Problem",
    "Record",
    "inside_root",
    "keyed_rows",
    "read_rows",
    "require_file",
]


@dataclass
class DatasetIndex:
    """Everything a reader learned from a dataset's annotation files, before any image is opened.

    ``splits`` holds the splits the dataset itself defines: always ``"train"`` and ``"test"``, plus
    ``"val"`` (and for FGVC-Aircraft ``"trainval"``) where it ships them. ``banner`` is the number of
    pixel rows to remove at the bottom of every image (FGVC-Aircraft's copyright banner).
    ``class_sources[label]`` is ``(file, where)``: the list file entry that names the class (``classes.txt``,
    ``line 3``), for the messages about class names (the root where a reader gives none).
    ``taxonomy[label]`` is what the dataset says about the class beyond its name, for reports: its
    original id and its ranks (iNaturalist: ``kingdom`` ... ``genus``; NABirds: its ancestors in
    ``hierarchy.txt``), empty where the dataset has none.
    """

    name: str
    root: Path
    classes: list[str]
    splits: dict[str, list[Record]]
    has_boxes: bool
    problems: list[Problem] = field(default_factory=list)
    banner: int = 0
    class_sources: list[tuple[str, str]] = field(default_factory=list)
    taxonomy: list[dict[str, str]] = field(default_factory=list)
    check_as: str = ""  # the ``--dataset`` of ``elope data check`` where it is not ``name`` (a shard set)

    def __post_init__(self) -> None:
        """A classifier needs two classes: fewer (in the class list or among the training labels) is the
        first problem of the dataset, so it is refused instead of trained to a meaningless 100 %."""
        trained = {record.label for record in self.trainval()}
        if len(self.classes) < 2 or (self.trainval() and len(trained) < 2):
            found = (
                f"{len(self.classes)} class(es) {self.classes[:2]}"
                if len(self.classes) < 2
                else f"training images of only {len(trained)} of its {len(self.classes)} classes"
            )
            self.problems.insert(
                0,
                Problem(
                    str(self.root),
                    f"the dataset at {self.root} has {found}; classification needs at least 2 classes "
                    "with training images",
                ),
            )
        self.problems += _index_problems(self, trained)

    def trainval(self) -> list[Record]:
        """The dataset's own full training split."""
        if "trainval" in self.splits:
            return self.splits["trainval"]
        return self.splits["train"] + self.splits.get("val", [])

    def raise_for_problems(self) -> None:
        """Raise the first problem as an :class:`AnnotationError` (with a pointer to ``data check``)."""
        if not self.problems:
            return
        first = self.problems[0]
        more = len(self.problems) - 1
        hint = f" ({more} more problem(s))" if more else ""
        raise AnnotationError(
            f"{first.path}: {first.problem}{hint}. Run `elope data check --dataset {self.check_as or self.name} "
            f"--root {self.root}` to list every problem.",
            first.path,
        )


def _index_problems(index: DatasetIndex, trained: set[int]) -> list[Problem]:
    """What the annotation files say that would make a silently wrong result: a class without training
    images (the classifier would have a class it never saw), a class name that does not print or that
    another class has, one file listed twice or for training and for testing (a train/test leak; links
    resolved: :mod:`elope.data.duplicates`), a box with a NaN or infinite coordinate."""
    problems = []
    if index.trainval():
        problems += [
            Problem(
                str(index.root),
                f"class {name!r} (label {label}) has no training images: remove it from the class list, or "
                "add images of it",
            )
            for label, name in enumerate(index.classes)
            if label not in trained
        ]
    problems += class_name_problems(index.classes, index.class_sources, index.root)
    problems += same_file_problems(index.splits, index.classes)
    seen: set[str] = set()
    for records in index.splits.values():
        for r in records:
            if r.box is not None and not all(map(math.isfinite, r.box)) and str(r.path) not in seen:
                seen.add(str(r.path))
                box = " ".join(f"{v:g}" for v in r.box)
                problems.append(Problem(str(r.path), f"box of image {r.key} is not finite ({box}): fix it"))
    return problems


def _climbs_out(name: str) -> bool:
    """Whether ``name`` is absolute or holds a ``..`` part: on POSIX with string operations (a list of
    2.7 million names, iNaturalist 2021's, is checked in a fraction of the time ``Path`` takes)."""
    if os.name != "posix":
        path = Path(name)
        return path.is_absolute() or ".." in path.parts
    return name.startswith("/") or ".." in name.split("/")


def inside_root(folder: Path, name: str, source: Path, where: str, problems: list[Problem]) -> Path | None:
    """``folder / name`` when ``name`` is a relative path that stays inside ``folder``, else None.

    A list file that names an absolute path or climbs out with ``..`` would make the reader open files
    outside the dataset; that is recorded as a problem of ``source`` at ``where`` (e.g. "line 3") instead.
    Links inside the dataset folder are followed as usual (only the name is checked).
    """
    if not name or _climbs_out(name):
        problems.append(
            Problem(
                str(source),
                f"{where}: {name!r} is not a path inside {folder} (absolute paths and '..' are refused: "
                "list files name images relative to the dataset)",
            )
        )
        return None
    return folder / name


def require_file(path: Path, dataset: str, what: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`DatasetNotFoundError` saying what it should be."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: expected {what} at {path}, but it does not exist.", str(path))
    return path


def read_rows(
    path: Path,
    columns: Sequence[tuple[str, Callable[[str], Any]]],
    problems: list[Problem],
    *,
    rest: bool = False,
) -> list[tuple[int, list[Any]]]:
    """Parse a whitespace-separated text table into ``(line_number, values)`` rows.

    Args:
        path: the file.
        columns: ``(name, converter)`` per column, e.g. ``[("image_id", int), ("image_name", str)]``.
        problems: malformed lines are appended here (file, "line N: expected ..."), then skipped.
        rest: the last column takes the rest of the line, spaces included (FGVC-Aircraft class names).

    Blank lines are ignored.
    """
    expected = " ".join(f"<{name}>" for name, _ in columns)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        problems.append(Problem(str(path), f"is not UTF-8 text ({error})"))
        return []
    except OSError as error:
        raise DatasetNotFoundError(f"cannot read {path}: {error}", str(path)) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(maxsplit=len(columns) - 1) if rest else line.split()
        if len(fields) != len(columns):
            problems.append(
                Problem(
                    str(path), f"line {number}: expected {len(columns)} fields '{expected}', got {line!r}"
                )
            )
            continue
        try:
            values = [convert(value) for (_, convert), value in zip(columns, fields)]
        except ValueError:
            problems.append(Problem(str(path), f"line {number}: expected '{expected}', got {line!r}"))
            continue
        rows.append((number, values))
    return rows


def keyed_rows(
    path: Path, rows: list[tuple[int, list[Any]]], problems: list[Problem]
) -> dict[Any, tuple[int, list[Any]]]:
    """Index rows by their first value; a repeated key is a problem (the first occurrence wins)."""
    table: dict[Any, tuple[int, list[Any]]] = {}
    for number, values in rows:
        key = values[0]
        if key in table:
            problems.append(
                Problem(str(path), f"line {number}: id {key} already appears on line {table[key][0]}")
            )
            continue
        table[key] = (number, values[1:])
    return table
