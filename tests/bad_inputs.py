"""Helpers of the bad-input suite (tests/test_bad_inputs_*.py, docs/reliability.md).

Every case runs the command line in-process (``click.testing.CliRunner``) and checks the same four things:
the exit status, that no traceback escaped (``CliRunner`` swallows one into ``result.exception``, so that
is checked too), that the message names the file or key concerned, and that no earlier output changed
(a hash of every file under the run folder, before and after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner, Result
from PIL import Image

from elope.cli import main


def invoke(*args: str | Path) -> Result:
    """``elope ARGS`` in this process; stdout and stderr both in ``result.output``."""
    return CliRunner().invoke(main, [str(a) for a in args])


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: float sums in the same order in every run, whatever the machine's load
    (bit-exact comparisons between two runs in one process need it, as tests/test_train_resume.py does)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tree_hash(folder: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``folder`` (folders as ``"<dir>"``; links as targets)."""
    if not folder.exists():
        return {}
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), folder)] = "<dir>"
        for name in filenames:
            path = Path(dirpath) / name
            key = os.path.relpath(path, folder)
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_clean_exit(result: Result, code: int, *needles: str) -> None:
    """Exit status ``code``, no traceback (none printed, none swallowed), every needle in the output."""
    output = result.output
    assert result.exit_code == code, (
        f"exit {result.exit_code}, expected {code}:\n{output}\n{result.exception!r}"
    )
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}:\n{output}"
    assert "Traceback" not in output and "Original Traceback" not in output, output
    for needle in needles:
        assert needle in output, f"{needle!r} not in:\n{output}"


def error_lines(result: Result) -> list[str]:
    """The lines of the ``Error: ...`` message (click prints one such block)."""
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    return lines[start:]


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run folder (links kept as links)."""
    shutil.copytree(run, dest, symlinks=True)
    return dest


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to a fraction of its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def gradient_image(path: Path, mode: str, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """Write a horizontal grey ramp in ``mode``; returns the 8-bit grey values it must decode to (H, W)."""
    width, height = size
    ramp = np.linspace(0.0, 1.0, width)[None, :].repeat(height, 0)  # 0 .. 1, left to right
    expected = np.rint(ramp * 255.0).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(np.rint(ramp * 65535).astype(np.uint16))
    elif mode == "I":
        image = Image.fromarray(np.rint(ramp * 65535).astype(np.int32))  # a 16-bit range in 32-bit ints
    elif mode == "F":
        image = Image.fromarray(ramp.astype(np.float32))  # 0 .. 1 floats
    else:
        raise ValueError(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="TIFF" if mode in ("I", "F") else "PNG")
    return expected


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces ``width`` x ``height`` pixels, in 60 bytes (no pixel data to speak of)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path
