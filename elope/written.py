"""What the writer (:mod:`elope.writer`) knows about the files elope wrote, and who writes an output now.

**The manifest.** Each folder elope writes an output into holds ``.elope-written``: one JSON line per file
written (``{"name", "size", "mtime_ns"}``), appended with one ``write`` call after the file is in place.
A file is elope's when the last line naming it still matches its size and modification time: a file
edited, replaced or copied over by anyone since is no longer elope's, and is refused without ``--force``.
Files of a folder the command owns (a run folder, a synthetic set) are not listed: the command owns them
all. A damaged manifest line is skipped (its file counts as not elope's: a refusal, never a loss).

**The output lock.** While a process writes ``DIR/NAME`` (for a command: from :func:`elope.writer.claim`
before its work to its end) it holds ``fcntl.flock`` on ``DIR/.NAME.elope-lock``, which holds ``PID
COMMAND``. A second process is refused at once, naming the first. The kernel releases a flock when its
process dies, so a lock file left by a killed process blocks nothing. The file is removed on release.
Where ``flock`` is not available (Windows, some network file systems) nothing is locked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from elope.outputs import OutputPathError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["MANIFEST", "OutputLockedError", "is_written", "lock_path", "output_lock", "record_written"]

MANIFEST = ".elope-written"
# real path of an output -> [how many times this process holds its lock]
_HELD: dict[str, int] = {}


class OutputLockedError(OutputPathError):
    """Another process writes the same output now; the message names its process id and command."""


def _entry(path: Path) -> dict[str, object]:
    info = os.lstat(path)
    return {"name": path.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def is_written(path: str | os.PathLike[str]) -> bool:
    """Whether the file ``path`` is as elope wrote it (its folder's manifest, above)."""
    path = Path(path)
    try:
        lines = (path.parent / MANIFEST).read_bytes().splitlines()
        now = _entry(path)
    except OSError:
        return False
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("name") == path.name:
            return entry == now
    return False


def record_written(path: str | os.PathLike[str]) -> None:
    """Add ``path`` (just written) to its folder's manifest."""
    path = Path(path)
    line = (json.dumps(_entry(path)) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path.parent / MANIFEST, flags, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of the output ``path``: ``DIR/.NAME.elope-lock``."""
    path = Path(path)
    return path.parent / f".{path.name}.elope-lock"


def holder_text(fd: int) -> str:
    """Who holds the lock file open at ``fd``: ``process PID (COMMAND)``, from the line its holder wrote."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"process {pid} ({command or 'elope'})" if pid.isdigit() else "another process"


def take_flock(
    lock: Path, command: str, busy: Callable[[str], Exception], changing: Exception, flags: int = 0
) -> int | None:
    """The descriptor of the lock file ``lock``, exclusively flock-ed and holding ``PID COMMAND``; None
    where this file system cannot lock. Another holder: ``busy(holder_text)`` is raised. The output locks
    (:func:`output_lock`) and the run folder's lock (:mod:`elope.runs.lock`) both take theirs here."""
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = holder_text(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy(holder) from None
            return None  # ENOLCK, EOPNOTSUPP: no locks here
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not removed by the last holder between our open and our flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
            return fd
        os.close(fd)
    raise changing


def _take(lock: Path, command: str, option: str, output: Path) -> int | None:
    """The locked descriptor of the output's ``lock``; None where this file system cannot lock."""
    return take_flock(
        lock,
        command,
        lambda holder: OutputLockedError(
            f"{option} {output}: {holder} is writing it now; wait for it to finish (or stop it), "
            "then run this again, or choose another path"
        ),
        OutputLockedError(f"{option} {output}: could not lock {lock}: it keeps changing"),
        getattr(os, "O_NOFOLLOW", 0),
    )


@contextmanager
def output_lock(path: str | os.PathLike[str], command: str, option: str = "output") -> Iterator[None]:
    """Hold the lock of the output ``path`` for the ``with`` block (re-entrant within one process).

    Raises:
        OutputLockedError: another process holds it.
    """
    path = Path(path)
    key = os.path.realpath(path)
    if fcntl is None or key in _HELD or not path.parent.is_dir():
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    lock = lock_path(path)
    fd = _take(lock, command, option, path)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        if fd is not None:
            with contextlib.suppress(OSError):
                lock.unlink(missing_ok=True)
            os.close(fd)
