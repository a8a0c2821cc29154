"""Which files are images: one set of extensions for every command, and a folder walk that says what it skips.

:data:`IMAGE_EXTENSIONS` is every raster format this Pillow opens (``.jpg``, ``.png``, ``.tif``, ``.gif``,
``.webp``, ``.bmp``, ``.ico``, ``.jp2`` and ``.avif`` where Pillow has their codecs, ...): ``elope predict``
on a folder and the ``folder`` dataset read the same files. :func:`walk_images` follows links, reads a
folder reached twice (a link loop) once, opens nothing that is not a regular file (a FIFO named ``x.jpg``
would block the first read forever) and returns every file it skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "UNREADABLE_EXTENSIONS", "Skipped", "is_image_name", "walk_images"]

# Formats Pillow registers that are not pictures to classify, or need what Pillow does not ship: vector and
# page formats (Ghostscript), Windows metafiles, scientific containers Pillow only identifies, and video.
_NOT_PICTURES = {".eps", ".ps", ".pdf", ".wmf", ".emf", ".bufr", ".grib", ".h5", ".hdf", ".mpeg", ".mpg"}


def _pillow_extensions() -> tuple[str, ...]:
    Image.init()
    return tuple(
        sorted(
            ext
            for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and ext not in _NOT_PICTURES
        )
    )


#: Extensions (lower case, with the dot) of the images every command reads.
IMAGE_EXTENSIONS: tuple[str, ...] = _pillow_extensions()

#: Image extensions this Pillow cannot decode (no plugin or codec): reported, never silently left out.
UNREADABLE_EXTENSIONS: tuple[str, ...] = tuple(
    sorted(
        {
            ".heic",
            ".heif",
            ".avif",
            ".avifs",
            ".jxl",
            ".jp2",
            ".j2k",
            ".jpx",
            ".svg",
            ".dng",
            ".cr2",
            ".nef",
            ".arw",
        }
        - set(IMAGE_EXTENSIONS)
    )
)


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Skipped:
    """A file or folder a walk left out: its path, why, and whether that is a problem of the data (a
    file that looks like an image but cannot be read as one) or just not an image (``README.txt``)."""

    path: str
    reason: str
    problem: bool


def _file_problem(path: str) -> str | None:
    """Why ``path`` (a name a folder lists) cannot be read as an image file, or None."""
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a link loop"
        if os.path.islink(path):
            return f"a link to {os.readlink(path)}, which does not exist"
        return f"cannot be read ({error.strerror})"
    if not stat.S_ISREG(info.st_mode):
        kinds = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device"}
        kind = next((name for test, name in kinds.items() if test(info.st_mode)), "not a regular file")
        return f"{kind}, not a regular file: not opened"
    return None


def _classify(path: str) -> Skipped | None:
    """None for an image file to read, else why it is skipped."""
    ext = os.path.splitext(path)[1].lower()
    problem = _file_problem(path)
    if problem is not None:
        return Skipped(path, problem, ext in IMAGE_EXTENSIONS or ext in UNREADABLE_EXTENSIONS)
    if ext in IMAGE_EXTENSIONS:
        return None
    if ext in UNREADABLE_EXTENSIONS:
        return Skipped(path, f"this Pillow cannot decode {ext} images (no plugin): convert it", True)
    return Skipped(path, f"not an image file name ({ext or 'no extension'})", False)


def walk_images(folder: str | os.PathLike[str], *, hidden: bool = False) -> tuple[list[Path], list[Skipped]]:
    """Image files below ``folder`` (sorted; links followed) and every file or folder skipped.

    ``hidden=False`` leaves out names starting with a dot without reporting them (``.DS_Store``, ``.git``).
    A folder reached a second time (a link loop, or a second link to the same images) is reported and read
    once.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:  # a folder that cannot be listed: said, not silently left out
        skipped.append(Skipped(str(error.filename), f"cannot be read ({error.strerror})", True))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unreadable):
        info = os.stat(dirpath)
        if (info.st_dev, info.st_ino) in seen:
            dirnames[:] = []
            reason = (
                f"links back to {os.path.realpath(dirpath)}, a folder already read: skipped (a link loop)"
            )
            skipped.append(Skipped(dirpath, reason, True))
            continue
        seen.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if hidden or not d.startswith("."))
        for name in sorted(filenames):
            if not hidden and name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            why = _classify(path)
            if why is None:
                found.append(Path(path))
            else:
                skipped.append(why)
    return sorted(found), skipped
