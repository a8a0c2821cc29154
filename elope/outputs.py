"""Output paths, checked before any work starts (``docs/reliability.md``, "Output paths").

Every command checks each path it will write with :func:`check_output` first (through
:func:`elope.writer.claim`, which then applies the writer's rules), so a path that cannot be
written is refused in one line before a model is trained, evaluated or exported, never as a traceback
after the work. One message shape for every command and every problem::

    --json out/m.json: out is a file, not a folder; choose another path

The problems found: a folder where a file is expected (or a file where a folder is expected), a FIFO,
socket or device instead of a regular file, a link loop, a parent that is a file, and a place that cannot
be written (read-only, no permission). Writability is *tried* (a temporary file is created and removed, or
an existing file opened for appending), because permission bits do not tell the whole story (root, a
read-only mount, ACLs).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["OutputPathError", "check_output", "enclosing_run", "file_kind"]


class OutputPathError(ValueError):
    """An output path cannot be written; the message names the option, the path and the fix."""


def file_kind(mode: int) -> str:
    """``a folder``, ``a regular file``, ``a FIFO (named pipe)``, ... for ``os.stat(...).st_mode``."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _fail(option: str, path: Path, problem: str, fix: str = "choose another path") -> OutputPathError:
    return OutputPathError(f"{option} {path}: {problem}; {fix}")


def _stat(path: Path, option: str, shown: Path) -> os.stat_result | None:
    """``os.stat(path)`` (links followed); None when it does not exist (or a parent is not a folder)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise _fail(
                option, shown, f"{path} is a link to {os.readlink(path)}, which does not exist"
            ) from None
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _fail(option, shown, f"{path} is a link loop") from None
        raise _fail(option, shown, f"cannot look at {path} ({error.strerror})") from None


def _try_write_in(folder: Path, option: str, shown: Path) -> None:
    """Create and remove a temporary file in ``folder``: the only sure test that it can be written."""
    try:
        fd, name = tempfile.mkstemp(prefix=".elope-write-test-", dir=folder)
    except OSError as error:
        raise _fail(
            option,
            shown,
            f"cannot write in {folder} ({error.strerror})",
            "choose another path, or fix its permissions",
        ) from None
    os.close(fd)
    os.unlink(name)


def _existing_parent(path: Path, option: str) -> Path:
    """The nearest existing folder above ``path``; a file on the way is refused."""
    for parent in path.parents:
        info = _stat(parent, option, path)
        if info is None:
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise _fail(option, path, f"{parent} is {file_kind(info.st_mode)}, not a folder")
        return parent
    return Path(".")


def check_output(
    path: str | os.PathLike[str],
    option: str,
    *,
    kind: str = "file",
) -> Path:
    """Refuse an output path that cannot be written, before any work; returns it as a ``Path``.

    Args:
        path: the path the command will write.
        option: how the user named it (``--json``, ``--out``), for the message.
        kind: ``file`` (a file is written there) or ``dir`` (a folder is made there, files written in it).

    What the command reads (its inputs, a run's files, a data set) is the writer's part
    (:func:`elope.writer.claim` runs this check, then its rules).

    Raises:
        OutputPathError: one line, ``{option} {path}: {problem}; {fix}``.
    """
    path = Path(path)
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    info = _stat(path, option, path)
    if info is None:
        _try_write_in(_existing_parent(path, option), option, path)
        return path
    if kind == "dir":
        if not stat.S_ISDIR(info.st_mode):
            raise _fail(option, path, f"is {file_kind(info.st_mode)}, not a folder")
        _try_write_in(path, option, path)
        return path
    if not stat.S_ISREG(info.st_mode):
        raise _fail(option, path, f"is {file_kind(info.st_mode)}, not a regular file")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))  # opens for writing, changes nothing
    except OSError as error:
        raise _fail(
            option,
            path,
            f"cannot be written ({error.strerror})",
            "choose another path, or fix its permissions",
        ) from None
    return path


def _looks_like_run(folder: Path) -> bool:
    """A run folder: its resolved ``config.yaml`` and a ``metrics.jsonl`` or a saved ``model/model.json``
    (``elope.runs.layout``)."""
    return (folder / "config.yaml").is_file() and (
        (folder / "metrics.jsonl").is_file() or (folder / "model" / "model.json").is_file()
    )


def enclosing_run(path: str | os.PathLike[str]) -> Path | None:
    """The run folder that ``path`` lies in (it or the nearest folder above it), or None."""
    path = Path(os.path.abspath(path))
    for folder in [path, *path.parents]:
        if folder.is_dir() and _looks_like_run(folder):
            return folder
    return None
