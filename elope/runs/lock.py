"""One writer per run folder: an exclusive lock held for the life of every command that writes into it.

``elope train`` (fresh, ``--resume`` or ``--force``), ``evaluate --examples`` / ``--json`` / ``--predictions``
into a run folder, ``export --out`` into one, ``predict --save-vis`` into one, ``elope demo`` and
``elope ablate`` (their ``--out``) take :func:`run_lock` first. A second writer is refused at once, in one
line naming the holder's process id and command.

The lock is ``fcntl.flock`` on ``RUN/.elope.lock``, which holds ``PID COMMAND`` while it is held. The kernel
releases a flock when its process dies (SIGKILL, power loss), so a lock file left behind by a killed
process never blocks: the next writer locks it and overwrites it. The file is removed when the lock is
released (after a check that the file locked is still the one at that path, so two writers can never both
hold a lock on different files; a file that cannot be removed, in a folder deleted or made read-only
meanwhile, is left: it blocks nothing). The lock file is also the run folder's identity while it is held:
:func:`check_lock_held` finds a folder deleted or moved under a running writer. Readers (``evaluate``, ``predict`` and ``export`` that write elsewhere)
take no lock. One process may take the lock of a folder it already holds (``elope demo`` trains into its
own ``--out``). Where ``flock`` is not available (Windows, some network file systems) nothing is locked.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from elope.failures import TrainingError
from elope.outputs import enclosing_run
from elope.written import holder_text, take_flock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_FILE",
    "RunFolderLostError",
    "RunLockedError",
    "check_lock_held",
    "enclosing_run",
    "folder_write_error",
    "lock_holder",
    "run_lock",
    "writers_lock",
]

LOCK_FILE = ".elope.lock"
# real path of a folder -> [how many times this process holds its lock, the descriptor of its lock file]
_HELD: dict[str, list[int]] = {}


class RunLockedError(TrainingError):
    """Another process writes into the run folder; the message names its process id."""


class RunFolderLostError(TrainingError):
    """The run folder was deleted or moved while this process wrote into it."""


def check_lock_held(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`RunFolderLostError` when ``folder``, locked by this process, was deleted or moved (its
    lock file is gone, or is another file): a writer checks this before it writes, instead of making the
    folder again (``mkdir -p``) or failing with a bare ``FileNotFoundError``. No-op for a folder this
    process does not lock (another rank of a distributed run, or no ``flock`` here)."""
    held = _HELD.get(os.path.realpath(folder))
    if held is None or held[1] < 0:
        return
    fd = held[1]
    try:
        here, held = os.stat(Path(folder) / LOCK_FILE), os.fstat(fd)
        same = (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)
    except OSError:
        same = False
    if not same:
        raise RunFolderLostError(_lost_message(folder))


def _lost_message(folder: str | os.PathLike[str]) -> str:
    return (
        f"the run folder {folder} was deleted or moved while this command was writing into it; stopped. If "
        "it was moved, `elope train --out NEW_PLACE --resume` continues it from its last checkpoint; "
        "otherwise train again"
    )


def folder_write_error(folder: str | os.PathLike[str], error: OSError) -> TrainingError | None:
    """The one-line error of a write into the run ``folder`` that failed because the folder changed under
    the writer: deleted or moved (:class:`RunFolderLostError`), or no longer writable (its permissions
    changed, made immutable with ``chattr +i``, remounted read-only). None for any other error (a full disk
    has its own message; an error about a file outside the folder is not the folder's)."""
    name = getattr(error, "filename", None)
    if error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS) or not name:
        return None
    inside = os.path.abspath(os.fsdecode(name)).startswith(os.path.abspath(folder) + os.sep)
    if not inside:
        return None
    if not os.path.isdir(folder):
        return RunFolderLostError(_lost_message(folder))
    reason = error.strerror or type(error).__name__
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return TrainingError(
            f"cannot write {os.fsdecode(name)} ({reason}): part of the run folder {folder} was deleted while "
            f"training; stopped. `elope train --out {folder} --resume` continues from the last checkpoint left"
        )
    return TrainingError(
        f"cannot write in the run folder {folder} while training ({reason}: {os.fsdecode(name)}): its "
        "permissions were changed, or it was made immutable or read-only; stopped. Restore write access, then "
        f"`elope train --out {folder} --resume` continues from the last checkpoint"
    )


def _make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it made, deepest first (removed again if left empty)."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _try_lock(path: Path, command: str) -> int | None:
    """The locked descriptor of ``path``; None when flock is not available here."""
    return take_flock(
        path,
        command,
        lambda holder: RunLockedError(
            f"{path.parent} is in use by {holder}, which writes into it: wait for it to finish "
            f"(or stop it), then run this again; one writer per run folder"
        ),
        RunLockedError(f"could not lock {path}: it keeps changing; is another elope writing there?"),
    )


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
    if key in _HELD:
        _HELD[key][0] += 1
        try:
            yield
        finally:
            _HELD[key][0] -= 1
        return
    path = folder / LOCK_FILE
    try:
        fd = _try_lock(path, command)
    except BaseException:
        _remove_empty(made)
        raise
    _HELD[key] = [1, -1 if fd is None else fd]
    try:
        yield
    finally:
        del _HELD[key]
        if fd is not None:
            _release(path, fd)
        _remove_empty(made)


def _release(path: Path, fd: int) -> None:
    """Remove the lock file, then unlock (close). The file is removed first, so a waiter finds it gone and
    retries; a file that cannot be removed (its folder deleted, read-only or immutable now) stays, which
    blocks nothing, and never hides the error that ended the command."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    os.close(fd)


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
        return holder_text(fd)
    finally:
        os.close(fd)
    return None


@contextmanager
def writers_lock(paths: Iterable[str | os.PathLike[str] | None], command: str) -> Iterator[None]:
    """Hold the lock of every run folder that one of ``paths`` (outputs; None skipped) lies in."""
    folders = {os.path.realpath(f): f for p in paths if p is not None and (f := enclosing_run(p))}
    with ExitStack() as stack:
        for folder in folders.values():
            stack.enter_context(run_lock(folder, command))
        yield
