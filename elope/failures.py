"""One-line messages for failures the user can act on (``docs/reliability.md``).

Shared by the command line and the loaders: the message of an error raised in a DataLoader worker without
the worker's traceback, the refusal of a pickle that holds code, and "no space left on device". Below the
commands, what the user is told goes through an :data:`Echo` the caller passes in (``click.echo`` to stderr
from the commands, :func:`to_stderr` by default): no layer below ``elope.commands`` imports click.
"""

from __future__ import annotations

import errno
import pickle
import re
import reprlib
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "ConfigError",
    "Echo",
    "TrainingError",
    "is_no_space",
    "no_space_message",
    "one_line",
    "short_repr",
    "to_stderr",
    "torch_load_message",
]

#: Where a library function's progress lines and warnings go: one line of text per call.
Echo = Callable[[str], None]


def to_stderr(line: str) -> None:
    """The default :data:`Echo`: the line on standard error."""
    print(line, file=sys.stderr, flush=True)


class ConfigError(ValueError):
    """A recipe key or value is wrong; the message names the key path (also ``elope.config.ConfigError``)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model it is loaded into (raised by
    :mod:`elope.runs.checkpoint`; defined here so that the commands catch it without importing torch)."""


class TrainingError(RuntimeError):
    """A problem the user can act on (bad data, non-finite loss, inconsistent run folder): raised by the
    training engine and the run-folder guard, reported by ``elope train`` as one line."""


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, built without expanding the whole value.

    User input is echoed in error messages; a YAML alias bomb (a few lines that nest references a billion
    deep) would take minutes and gigabytes to ``repr`` in full, so nesting and lengths are capped first.
    """
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 3, limit, limit, limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = short.maxfrozenset = 6
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# torch.utils.data re-raises a worker's exception with its formatted traceback as the message:
# "Caught ImageLoadError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n..."
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"
_LAST_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt)(?:: |$)", re.M)


def one_line(error: BaseException) -> str:
    """The message of ``error`` as its own process would give it.

    An exception raised in a DataLoader worker reaches the main process with the worker's traceback in its
    message; this returns the original message alone (what the main process says for the same file).
    """
    text = str(error)
    start = text.find(_WORKER_TRACEBACK)
    if start < 0:
        return text
    matches = list(_LAST_EXCEPTION.finditer(text, start))
    if not matches:
        return text.splitlines()[0] if text else type(error).__name__
    last = matches[-1]
    head = last.group(0)
    return text[last.start() + len(head) :].strip() or head.rstrip(": ")


def torch_load_message(path: str | Path, error: BaseException, what: str = "file") -> str:
    """What to say when ``torch.load(path, weights_only=True)`` of a ``what`` failed with ``error``.

    A pickle that holds more than tensors and plain data is refused *as unsafe*: such a file can run code
    when it is loaded, so PyTorch's advice to retry with ``weights_only=False`` is not repeated.
    """
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = re.search(r"unsupported GLOBAL [\w.]+", text, re.I) or re.search(
            r"Unsupported operand \d+", text
        )
        detail = f" ({found.group(0)})" if found else ""
        return (
            f"refused to load {what} {path}: it holds pickled code or Python objects{detail}, not only "
            "tensors and plain data, and loading it could run that code; it will not be loaded. Use a file "
            "written by elope, a plain state dict (torch.save(model.state_dict(), ...)) or a .safetensors file"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot read {what} {path}: {first}"


def is_no_space(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from or while handling, is "no space left on device".

    ``torch.save`` turns the ``OSError`` of a full disk into ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``, with the ``OSError`` as its context; a disk quota counts too.
    """
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def no_space_message(path: str | Path) -> str:
    """The message of a checkpoint that could not be written for want of space."""
    return (
        f"no space left on device while writing {path}; the previous checkpoint is intact; "
        "free space and --resume"
    )
