"""Finding a dataset's folder under ``--root``, and saying which folder to pass when ``--root`` is one
level off.

``--root`` is the folder that the dataset's official archive extracts into. A reader accepts that folder,
or (where the archive makes one) the folder the archive creates inside it. When neither holds the dataset
but the folder above ``--root`` (the user pointed inside the dataset) or one folder below it (the user
pointed one level above) does, the error names that folder: ``pass --root <that folder>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .errors import DatasetNotFoundError

__all__ = ["find_root"]

#: at most this many sub-folders of ``--root`` are looked into for the one-level-above hint
_MAX_CHILDREN = 200


def _match(folder: Path, is_base: Callable[[Path], bool], containers: tuple[str, ...]) -> Path | None:
    """The dataset folder when ``folder`` is an accepted root: ``folder/<container>`` or ``folder``."""
    for candidate in (*(folder / c for c in containers), folder):
        try:
            if is_base(candidate):
                return candidate
        except OSError:
            continue
    return None


def _children(folder: Path) -> list[Path]:
    try:
        entries = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []
    return [folder / name for name in entries[:_MAX_CHILDREN]]


def _one_level_off(root: Path, is_base: Callable[[Path], bool], containers: tuple[str, ...]) -> str:
    """``" ... pass --root X"`` when the dataset lies one level above or below ``root``, else ``""``."""
    resolved = root.resolve()
    for parent in (resolved.parent, resolved.parent.parent):
        if parent != resolved and _match(parent, is_base, containers) is not None:
            return f" It lies above {root}: you pointed inside the dataset; pass --root {parent}."
    for child in _children(root):
        if _match(child, is_base, containers) is not None:
            return f" It lies one level below {root}: pass --root {child}."
    return ""


def find_root(
    root: str | Path,
    name: str,
    is_base: Callable[[Path], bool],
    expected: str,
    containers: tuple[str, ...] = (),
) -> Path:
    """The folder holding the dataset's files.

    Args:
        root: ``--root``.
        name: the dataset's name for messages (``"NABirds"``).
        is_base: whether a folder is the dataset's own folder (e.g. holds ``hierarchy.txt``).
        expected: what the error says ``--root`` should be (the files it should hold, the archive).
        containers: folders the official archive creates, accepted between ``root`` and the dataset
            (``("nabirds",)``); the first is named in the message.

    Raises:
        DatasetNotFoundError: neither ``root`` nor ``root/<container>`` is the dataset's folder; when the
            folder above or a folder below is, the message says to pass that one.
    """
    root = Path(root).expanduser()
    found = _match(root, is_base, containers)
    if found is not None:
        return found
    hint = _one_level_off(root, is_base, containers)
    raise DatasetNotFoundError(f"{name} not found at {root}: expected {expected}.{hint}", str(root))
