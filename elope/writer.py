"""The one writer: every file elope writes goes through here (``docs/reliability.md``, "Third round: one
writer").

A command opens a :func:`session` with what it reads and what it owns; every write below it
(:func:`write_bytes`, :func:`write_text`, :func:`open_write`, :func:`write_with` for libraries that take
a path, :func:`append_text` for logs) is then checked against these rules:

* a **symbolic link** is never written through: the path itself must not be a link;
* a file the command **reads** (``inputs``: images, ``--model``, ``--config``; links resolved) is refused,
  and so is any path inside a folder it reads (``read``: a dataset root, an input folder, a run's model,
  teacher, checkpoints, crops and TensorBoard folders);
* an **existing file elope did not write** is refused unless the session has ``force`` (``--force``):
  elope knows its files by the manifest ``.elope-written`` of their folder (:mod:`elope.written`: name,
  size and modification time of each file it wrote; a file changed since, by anyone, is no longer
  elope's). Inside a folder the session ``own`` s (the run folder of ``train``, the set of ``data synth``,
  the ``--out`` of ``demo`` / ``suite`` / ``ablate`` / ``enroll``) the command replaces its own files freely;
* an owned folder never lies in a **run folder** (:func:`elope.outputs.enclosing_run`), ``--force`` or not,
  unless it is the run the command trains (``run``: ``train``, ``demo``) or lies in a folder that an
  enclosing command owns (the runs ``demo``, ``suite`` and ``ablate`` train inside their ``--out``): a data
  set, a demo or an enrolled model written into a run would replace or mix with the run's files;
* **atomic**: the bytes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then
  ``os.replace``-d over the path: a process killed mid-write leaves the old file (and a ``.elope-tmp``
  file beside it), never a truncated one;
* **one writer per output**: :func:`claim` (before the work) or the write itself takes the output's lock
  (:mod:`elope.written`); a second process writing the same output is refused at once, in one line (the
  other ranks of a distributed run, ``RANK`` > 0, claim without locking: rank 0 holds the lock);
* a replaced file is **said** on standard error (``replaced PATH``).

Without a session (the Python API) the rules are: no links, atomic, one writer per output; the caller
named the path in code, so an existing file is replaced. Appends (``metrics.jsonl``) are not atomic by
nature: they are whole lines written with one ``write`` call.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from elope.outputs import OutputPathError, check_output, enclosing_run
from elope.written import is_written, output_lock, record_written

__all__ = [
    "Session",
    "WriteRefusedError",
    "append_text",
    "claim",
    "make_folder",
    "open_write",
    "refusal",
    "session",
    "write_bytes",
    "write_text",
    "write_with",
]

PathLike = str | os.PathLike[str]


class WriteRefusedError(OutputPathError):
    """A write the rules refuse; the message names the path, the reason and the way out."""


def _real(path: PathLike) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass
class Session:
    """The rules of one command (see the module's docstring) and the output locks it holds."""

    command: str = "elope"
    inputs: tuple[str, ...] = ()  # real paths of the files read
    read: tuple[str, ...] = ()  # real paths of the folders read
    own: tuple[str, ...] = ()  # real paths of the folders owned
    force: bool = False
    checked: bool = True  # False outside a command: existing files are replaced (the Python API)
    echo: Callable[[str], None] | None = None
    locks: ExitStack = field(default_factory=ExitStack)
    claimed: list[str] = field(default_factory=list)
    own_top: bool = True  # False: the files directly in an owned folder are checked like any other

    def owns(self, real: str) -> bool:
        """Whether ``real`` (a real path) lies in a folder this command owns."""
        return any(_inside(real, folder) for folder in self.own)

    def owns_file(self, real: str) -> bool:
        """Whether the file ``real`` is the command's to replace freely: in an owned folder, and, for a
        command whose folder collects runs (``suite``, ``ablate``: ``own_top`` False), below its top (its
        ``suite.md`` may be a file of the user's; a fresh sweep after the writer, reliability S-W17)."""
        return self.owns(real) and (self.own_top or os.path.dirname(real) not in self.own)

    def holds(self, real: str) -> bool:
        return any(_inside(real, folder) for folder in self.claimed)

    def say(self, line: str) -> None:
        (self.echo or (lambda text: print(text, file=sys.stderr)))(line)


_SESSIONS: list[Session] = []


def _current() -> Session:
    return _SESSIONS[-1] if _SESSIONS else Session(checked=False)


@contextmanager
def session(
    command: str,
    *,
    inputs: Iterable[PathLike | None] = (),
    read: Iterable[PathLike | None] = (),
    own: Iterable[PathLike | None] = (),
    force: bool = False,
    echo: Callable[[str], None] | None = None,
    own_top: bool = True,
    run: PathLike | None = None,
) -> Iterator[Session]:
    """The rules of the command ``command`` for every write in the ``with`` block (None entries skipped);
    the locks its :func:`claim` s took are released at its end. ``own_top`` False: the files directly in
    an owned folder are not the command's (see :meth:`Session.owns_file`). ``run``: the run folder the
    command trains (owned too); any other owned folder in a run folder is refused here."""
    owned = [p for p in (*own, run) if p is not None]
    reads = tuple(_real(p) for p in read if p is not None)
    for folder in owned:  # one in a folder read is refused by claim, in the words of that rule
        if not any(_inside(_real(folder), name) for name in reads):
            _refuse_in_a_run(command, Path(folder), run)
    current = Session(
        command,
        tuple(_real(p) for p in inputs if p is not None),
        reads,
        tuple(_real(p) for p in owned),
        force,
        echo=echo,
        own_top=own_top,
    )
    _SESSIONS.append(current)
    try:
        with current.locks:
            yield current
    finally:
        _SESSIONS.remove(current)


def _refuse(option: str, path: Path, problem: str, fix: str = "choose another path") -> WriteRefusedError:
    return WriteRefusedError(f"{option} {path}: {problem}; {fix}")


def _refuse_in_a_run(command: str, folder: Path, run: PathLike | None) -> None:
    """Refuse an owned ``folder`` that lies in a run folder, unless that run is ``run`` or lies in a folder
    an enclosing session owns (see the module's docstring)."""
    found = enclosing_run(folder)
    if found is None or (run is not None and _real(found) == _real(run)):
        return
    if any(outer.owns(_real(found)) for outer in _SESSIONS):
        return
    raise _refuse(
        "output",
        folder,
        f"lies in the run folder {found}; a folder {command} makes is never written into a run "
        "(--force or not)",
    )


def _refuse_link(path: Path, option: str) -> None:
    if os.path.islink(path):
        raise _refuse(
            option,
            path,
            f"is a symbolic link (to {os.readlink(path)}); elope never writes through a link",
            "remove the link or choose another path",
        )


def refusal(path: PathLike, option: str = "output", *, folder: bool = False) -> None:
    """Raise :class:`WriteRefusedError` when the current rules refuse writing ``path`` (a file; with
    ``folder`` a folder files will be written in)."""
    path, rules = Path(path), _current()
    _refuse_link(path, option)
    real = _real(path)
    for name in (*rules.inputs, *rules.read):
        if real == name:
            raise _refuse(option, path, f"is {name}, which this command reads: it must not be overwritten")
    for name in rules.read:
        if _inside(real, name) and not rules.owns(name):  # a data set made in an own folder is the command's
            raise _refuse(
                option, path, f"lies in {name}, which this command reads: it must not be overwritten"
            )
    if folder or not rules.checked or rules.force or rules.owns_file(real) or not os.path.lexists(path):
        return
    if os.path.isfile(path) and not is_written(path):
        raise _refuse(
            option,
            path,
            "exists and was not written by elope",
            "pass --force to replace it, or choose another path",
        )


def claim(path: PathLike | None, option: str, *, kind: str = "file") -> Path | None:
    """Check ``path`` before the work (:func:`elope.outputs.check_output` and the rules) and hold its lock
    until the session ends: a second process writing it is refused now, not after its work. None passes."""
    if path is None:
        return None
    path = Path(path)
    _refuse_link(path, option)
    check_output(path, option, kind=kind)  # first: its answers (a folder, a FIFO) are the more precise
    refusal(path, option, folder=kind == "dir")
    rules = _current()
    if _SESSIONS and os.environ.get("RANK", "0") == "0":  # torchrun's other ranks: rank 0 holds the lock
        missing = [p for p in path.parents if not p.exists()]
        if missing:  # the lock lies beside the output; folders made for it go again if left empty
            make_folder(path.parent)
            rules.locks.callback(_remove_empty, missing)
        rules.locks.enter_context(output_lock(path, rules.command, option))
        rules.claimed.append(_real(path))
    return path


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (the command wrote there), or gone


@contextmanager
def _write_lock(path: Path) -> Iterator[None]:
    rules = _current()
    if rules.holds(_real(path)):
        yield
        return
    with output_lock(path, rules.command, "output"):
        yield


def make_folder(path: PathLike) -> Path:
    """``mkdir -p path`` under the rules (a link or a folder read by the command is refused)."""
    path = Path(path)
    if not path.is_dir():  # an existing folder (also through a link above the output) is used as it is
        refusal(path, folder=True)
        path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() gives a new file: the files written look as before


@contextmanager
def write_with(path: PathLike, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path in ``path``'s folder for a library that writes a file by name (``onnx.save``,
    ``savefig``, ``save_file``, PIL's ``save`` with a ``format``); moved over ``path`` when the block ends
    without an error, removed otherwise. ``durable=False`` (thousands of images of a data set) leaves out
    the ``fsync``: still atomic for a killed process, not for a power loss."""
    path = Path(path)
    refusal(path)
    make_folder(path.parent)
    with _write_lock(path):
        existed = os.path.lexists(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".elope-tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, _MODE)
            if durable:
                _fsync(tmp)
            refusal(path)  # again: a link or a foreign file put there during the work
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            _fsync(path.parent)
        _after(path, existed)


def _after(path: Path, existed: bool) -> None:
    rules = _current()
    if rules.owns_file(_real(path)) or not rules.checked:
        return
    record_written(path)
    if existed:
        rules.say(f"replaced {path}")


def _fsync(path: Path) -> None:
    """fsync a file or a folder (a no-op where a folder cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def open_write(path: PathLike, mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` ("w" or "wb"; ``encoding``, ``newline``) through :func:`write_with`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        options.setdefault("encoding", "utf-8")
    with write_with(path) as tmp, open(tmp, mode, **options) as f:
        yield f


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` under the rules, atomically."""
    with open_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` under the rules, atomically."""
    with open_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def append_text(path: PathLike, text: str) -> None:
    """Append ``text`` (whole lines) to ``path``, made if missing, with one ``write`` call, fsync-ed."""
    path = Path(path)
    refusal(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, _MODE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse("output", path, "is not a regular file")
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
