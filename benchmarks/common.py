"""Timing helpers shared by the benchmarks: warm-up, interleaved repetitions, medians, JSON output.

Every figure the benchmarks report is a *ratio* against a baseline timed in the same run. The contenders
are interleaved: repetition r times every contender once, and the order rotates from one repetition to
the next (A B C, B C A, C A B, ...), so slow drifts of the machine (other processes, thermal state) and
"who ran just before me" effects hit every contender alike. Each figure is the median over repetitions;
ratios are given both as ratio of medians and as median of the per-repetition (paired) ratios, which is
the more robust of the two on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "Timings",
    "cpu_model",
    "environment",
    "flush_denormal",
    "format_ms",
    "interleaved",
    "num_threads",
    "paired_ratio",
    "print_json",
    "write_json",
]


class Timings(dict[str, list[float]]):
    """Seconds per call of each contender, one entry per repetition (same index = same repetition)."""

    def median(self, name: str) -> float:
        """Median seconds per call of ``name``."""
        return statistics.median(self[name])

    def summary(self, name: str) -> dict[str, float]:
        """Median, minimum and inter-quartile range (seconds) of ``name``."""
        values = sorted(self[name])
        n = len(values)
        return {
            "median_s": statistics.median(values),
            "min_s": values[0],
            "q1_s": values[n // 4],
            "q3_s": values[(3 * n) // 4] if n > 1 else values[0],
            "repeats": n,
        }

    def ratio(self, name: str, baseline: str) -> dict[str, float]:
        """``name`` against ``baseline``: ratio of the medians and median of the paired ratios."""
        return {
            "ratio_of_medians": self.median(name) / self.median(baseline),
            "median_paired_ratio": paired_ratio(self[name], self[baseline]),
        }


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of ``values[i] / baseline[i]`` over repetitions i."""
    return statistics.median(v / b for v, b in zip(values, baseline, strict=True))


def interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    inner: int = 1,
    sync: Callable[[], None] | None = None,
) -> Timings:
    """Time each contender ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    Args:
        contenders: name -> zero-argument callable; the first one is conventionally the baseline.
        repeats: timed repetitions per contender (each repetition times every contender once).
        warmup: untimed calls per contender before timing (also interleaved).
        inner: calls per timed sample; the sample is their mean (for calls of a millisecond or less).
        sync: called before starting and before stopping the clock (``torch.cuda.synchronize`` on a GPU).

    Returns:
        :class:`Timings`, seconds per call.
    """
    if repeats < 1 or inner < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, inner >= 1, warmup >= 0; got {repeats}, {inner}, {warmup}")
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    timings = Timings({name: [] for name in names})
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = contenders[name]
            if sync is not None:
                sync()
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            if sync is not None:
                sync()
            timings[name].append((time.perf_counter() - start) / inner)
    return timings


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, restoring the previous value; None: unchanged."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def flush_denormal(enabled: bool = True) -> Iterator[None]:
    """``torch.set_flush_denormal(enabled)`` for the block (CPU only), then back to torch's default (off).

    Randomly initialised networks produce subnormal floats in some activations and gradients, and on a
    CPU each subnormal operation is very slow; how many appear depends on the initialisation, not on the
    architecture. Without flushing, two identically built ResNet-50 training steps measured ×0.90 of each
    other on the development machine; with flushing ×1.00. The benchmarks flush by default.
    """
    if enabled:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """What the figures were measured on: versions, CPU, cores, torch threads, CUDA device if any."""
    import torchvision

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["loadavg_1min"] = os.getloadavg()[0]  # > nproc: other processes compete for the cores
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def print_json(payload: Mapping[str, Any]) -> None:
    """Print ``payload`` as one JSON line."""
    print(json.dumps(payload, sort_keys=False))


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` (parents created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n")


def format_ms(seconds: float) -> str:
    """Seconds as milliseconds with 2 decimals."""
    return f"{seconds * 1e3:9.2f} ms"


def add_common_arguments(parser: argparse.ArgumentParser, threads: int = 2) -> None:
    """The options every benchmark shares: ``--threads``, ``--no-flush-denormal`` and ``--json``."""
    parser.add_argument(
        "--threads", type=int, default=threads, help="torch.set_num_threads; 0 leaves torch's default"
    )
    parser.add_argument(
        "--no-flush-denormal", action="store_true", help="keep subnormal floats (see common.flush_denormal)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-': stdout)")


def emit(report: str, result: Mapping[str, Any], json_path: str | None) -> None:
    """Print the human report, and the JSON result to stdout (``-``) or a file."""
    print(report)
    if json_path == "-":
        print_json(result)
    elif json_path:
        write_json(json_path, result)
