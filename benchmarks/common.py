"""What the benchmarks share: the command line (:func:`benchmark_main`: arguments, set-up, the report and the
JSON), the set-up of a measurement (:func:`measuring`, :func:`bench_device`, :func:`amp_context`), timing
(warm-up, interleaved repetitions, medians) and the ratio report (:func:`time_ratios`).

Run a benchmark as a module from the repository root: ``python -m benchmarks.<name> [options]``.

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
    "AMP_DTYPES",
    "NoDeviceError",
    "Timings",
    "add_common_arguments",
    "amp_context",
    "bench_device",
    "benchmark_main",
    "cpu_model",
    "emit",
    "environment",
    "flush_denormal",
    "format_ms",
    "interleaved",
    "measuring",
    "num_threads",
    "paired_ratio",
    "print_json",
    "time_ratios",
    "write_json",
]

AMP_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


class NoDeviceError(SystemExit):
    """The requested device is not available: the message goes to stderr, exit status 1."""


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


def add_common_arguments(parser: argparse.ArgumentParser, threads: int | None = 2) -> None:
    """The options every benchmark shares: ``--json``; with ``threads`` (the default of torch's threads)
    also ``--threads`` and ``--no-flush-denormal`` (None: the benchmark times onnxruntime and has its own
    ``--threads``)."""
    if threads is not None:
        parser.add_argument(
            "--threads", type=int, default=threads, help="torch.set_num_threads; 0 leaves torch's default"
        )
        parser.add_argument(
            "--no-flush-denormal",
            action="store_true",
            help="keep subnormal floats (see common.flush_denormal)",
        )
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-': stdout)")


def benchmark_main(
    argv: Sequence[str] | None,
    description: str,
    arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[..., dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
    *,
    threads: int | None = 2,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The command line of a benchmark: its own options (``arguments``) and the common ones
    (:func:`add_common_arguments`), then ``run(**options)``; prints ``report(result)``, writes the JSON and
    returns the result.

    Options reach ``run`` under their ``argparse`` names, each ``--no-X`` flag as ``X`` (negated:
    ``--no-flush-denormal`` is ``flush_denormal=False``), ``--threads 0`` as None; ``prepare`` may change
    them first (e.g. fill the ``--tiny`` defaults).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    arguments(parser)
    add_common_arguments(parser, threads)
    parsed = vars(parser.parse_args(argv))
    json_path = parsed.pop("json")
    options = {
        (k[3:] if k.startswith("no_") else k): (not v if k.startswith("no_") else v)
        for k, v in parsed.items()
    }
    if "threads" in options:
        options["threads"] = options["threads"] or None
    if prepare is not None:
        options = prepare(options)
    result = run(**options)
    emit(report(result), result, json_path)
    return result


@contextlib.contextmanager
def measuring(threads: int | None, flush_denormal_floats: bool = True) -> Iterator[None]:
    """The set-up of every CPU measurement: torch's threads (None: unchanged) and subnormal floats
    flushed (:func:`flush_denormal`), both restored afterwards."""
    with num_threads(threads), flush_denormal(flush_denormal_floats):
        yield


def bench_device(device: str, script: str) -> torch.device:
    """``--device`` as a torch device: ``cuda[:N]`` (refused, with what to do, without CUDA) or ``cpu``."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NoDeviceError(
            f"benchmarks/{script}: no CUDA device is available (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}, built with CUDA {torch.version.cuda}). Run it on a machine with an NVIDIA "
            "GPU, or use `--device cpu --tiny` for a smoke test of the code path."
        )
    if dev.type not in ("cuda", "cpu"):
        raise NoDeviceError(f"benchmarks/{script}: --device must be cuda[:N] or cpu, got {device!r}")
    return dev


def amp_context(device: torch.device, amp: str) -> Callable[[], Any] | None:
    """A factory of ``torch.autocast`` contexts for ``--amp`` (``AMP_DTYPES``); None for ``none``."""
    if amp not in AMP_DTYPES or (amp == "fp16" and device.type == "cpu"):
        raise NoDeviceError(f"--amp must be one of {sorted(AMP_DTYPES)} (fp16 needs CUDA), got {amp!r}")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return None
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def time_ratios(timings: Timings, pairs: Mapping[str, tuple[str, str]]) -> dict[str, float]:
    """The ratio report: ``{name: median paired time ratio of contender / baseline}`` for ``pairs``
    (``name -> (contender, baseline)``); above 1 the contender is slower."""
    return {name: timings.ratio(a, b)["median_paired_ratio"] for name, (a, b) in pairs.items()}


def emit(report: str, result: Mapping[str, Any], json_path: str | None) -> None:
    """Print the human report, and the JSON result to stdout (``-``) or a file."""
    print(report)
    if json_path == "-":
        print_json(result)
    elif json_path:
        write_json(json_path, result)
