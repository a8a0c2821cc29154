"""Exceptions raised by :mod:`elope.data`.

All of them derive from :class:`DataError`, so the command line can catch one type and print its message.
Every message names the path concerned and says what was expected there.
"""

from __future__ import annotations

__all__ = ["AnnotationError", "DataError", "DatasetNotFoundError", "ImageLoadError"]


class DataError(Exception):
    """Base class of every error about datasets and images."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset's files are missing or cannot be read at all (wrong root, wrong layout)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class AnnotationError(DataError, ValueError):
    """An annotation file holds a malformed line or values that contradict other annotation files."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class ImageLoadError(DataError, OSError):
    """An image is missing, unreadable, truncated or too large to decode safely.

    Constructible from a single message, so a DataLoader worker can re-raise it in the main process with
    the path still in the message.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])
