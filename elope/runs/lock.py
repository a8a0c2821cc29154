"""One writer per run folder: an exclusive lock held for the life of every command that writes into it.

``elope train`` (fresh, ``--resume`` or ``--force``), ``evaluate --examples`` / ``--json`` / ``--predictions``
into a run folder, ``export --out`` into one, ``predict --save-vis`` into one, ``elope demo`` and
``elope ablate`` (their ``--out``) take :func:`run_lock` first. A second writer is refused at once, in one
line naming the holder's process id and command.

The lock is ``fcntl.flock`` on ``RUN/.elope.lock``, which holds ``PID COMMAND`` while it is held. The kernel
releases a flock when its process dies (SIGKILL, power loss), so a lock file left behind by a killed
process never blocks: the next writer locks it and overwrites it. The file is removed when the lock is
released (after a check that the file locked is still the one at that path, so two writers can never both
hold a lock on different files). Readers (``evaluate``, ``predict`` and ``export`` that write elsewhere)
take no lock. One process may take the lock of a folder it already holds (``elope demo`` trains into its
own ``--out``). Where ``flock`` is not available (Windows, some network file systems) nothing is locked.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from elope.failures import TrainingError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLockedError", "enclosing_run", "lock_holder", "run_lock", "writers_lock"]

LOCK_FILE = ".elope.lock"
_HELD: dict[str, int] = {}  # real path of a folder -> how many times this process holds its lock


class RunLockedError(TrainingError):
    """Another process writes into the run folder; the message names its process id."""


def _holder_text(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"process {pid} ({command or 'elope'})" if pid.isdigit() else "another process"


def _make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it made, deepest first (removed again if left empty)."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _try_lock(path: Path, command: str) -> int | None:
    """The locked descriptor of ``path``; None when flock is not available here."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder_text(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(
                    f"{path.parent} is in use by {holder}, which writes into it: wait for it to finish "
                    f"(or stop it), then run this again; one writer per run folder"
                ) from None
            return None  # ENOLCK, EOPNOTSUPP: this file system cannot lock
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not removed by the last holder between our open and our flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
            return fd
        os.close(fd)
    raise RunLockedError(f"could not lock {path}: it keeps changing; is another elope writing there?")


@contextmanager
def run_lock(folder: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold the exclusive writer's lock of ``folder`` (made if missing) for the ``with`` block.

    Raises:
        RunLockedError: another process holds it; the message names its process id and command.
    """
    folder = Path(folder)
    if fcntl is None:
        yield
        return
    made = _make_dirs(folder)
    key = os.path.realpath(folder)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = folder / LOCK_FILE
    try:
        fd = _try_lock(path, command)
    except BaseException:
        _remove_empty(made)
        raise
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        if fd is not None:
            path.unlink(missing_ok=True)  # before the unlock: a waiter then finds the file gone and retries
            os.close(fd)
        _remove_empty(made)


def _remove_empty(made: list[Path]) -> None:
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (the command wrote there), or gone


def lock_holder(folder: str | os.PathLike[str]) -> str | None:
    """``process PID (COMMAND)`` when another process holds the lock of ``folder`` now, else None."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None or os.path.realpath(folder) in _HELD:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder_text(fd)
    finally:
        os.close(fd)
    return None


def _looks_like_run(folder: Path) -> bool:
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


@contextmanager
def writers_lock(paths: Iterable[str | os.PathLike[str] | None], command: str) -> Iterator[None]:
    """Hold the lock of every run folder that one of ``paths`` (outputs; None skipped) lies in."""
    folders = {os.path.realpath(f): f for p in paths if p is not None and (f := enclosing_run(p))}
    with ExitStack() as stack:
        for folder in folders.values():
            stack.enter_context(run_lock(folder, command))
        yield
