"""Load on ``elope serve`` with a standard load tool (issue 26): locust, 1 to 64 users on the loopback,
beside onnxruntime directly on the same photos, in one run.

* The server: ``elope serve --model FILE`` in a subprocess, as deployed; its resident memory sampled every
  0.1 s (:class:`benchmarks.serve.RssSampler`).
* The load: ``locust --headless`` (``benchmarks/locustfile_serve.py``: each user posts the photos of
  :func:`benchmarks.serve.photos`, JPEG 320x240 to 800x600, back to back on its keep-alive connection) for
  ``--seconds`` per level of ``--users``; locust's own statistics: requests/s, p50 / p99 latency,
  failures (anything but 200). Locust runs in its own process on the same 2 cores as the server.
* Direct: the same photos decoded as the server does and run in an onnxruntime session in this process,
  one by one and in batches of ``--max-batch`` (:func:`benchmarks.serve.direct`), before and after the
  levels; their mean is the reference.

Without ``--model`` the tiny random ELoPE of ``benchmarks/serve.py`` (resnet18, 96 px input) is exported
first. Loopback only; every level is bounded in time (locust's ``-t``) and the whole run by a time-out.

    pip install -e ".[bench]"
    python -m benchmarks.serve_locust --json serve-locust.json        # docs/results.md, "Serving"
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import benchmark_main, environment
from benchmarks.serve import REPO, RssSampler, _free_port, direct, photos, start_server, tiny_model

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile_serve.py"


def locust_level(port: int, pid: int, users: int, seconds: float, folder: Path) -> dict[str, Any]:
    """One level: ``users`` locust users for ``seconds`` against the server on ``port`` (process ``pid``)."""
    prefix = folder / f"users{users}"
    args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
            "-r", str(users), "-t", f"{seconds:g}s", "--host", f"http://127.0.0.1:{port}", "--csv",
            str(prefix), "--only-summary", "--stop-timeout", "5", "--loglevel", "ERROR"]  # fmt: skip
    env = {**os.environ, "ELOPE_BENCH_IMAGES": str(folder), "PYTHONPATH": str(REPO)}
    sampler = RssSampler(pid)
    sampler.start()
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        sampler.stop()
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    return {
        "users": users,
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "requests_per_s": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]),
        "p99_ms": float(total["99%"]),
        "mean_ms": float(total["Average Response Time"]),
        "server_peak_rss_mib": round(sampler.peak, 1),
        "locust_exit_code": done.returncode,
    }


def run(model: Path | None, users: Sequence[int], seconds: float, threads: int | None,
        direct_seconds: float, max_batch: int) -> dict[str, Any]:  # fmt: skip
    """The whole benchmark; returns a JSON-able dict."""
    import onnxruntime as ort

    options = ["--max-batch", str(max_batch), *(["--threads", str(threads)] if threads else [])]
    with tempfile.TemporaryDirectory(prefix="elope-locust-") as tmp:
        folder = Path(tmp)
        images = photos()
        for i, data in enumerate(images):
            (folder / f"{i:02d}.jpg").write_bytes(data)
        path = Path(model) if model else tiny_model(folder / "tiny.onnx")
        before = direct(path, images, threads, direct_seconds, max_batch)
        port = _free_port()
        server = start_server(path, port, options)
        try:
            levels = [locust_level(port, server.pid, n, seconds, folder) for n in users]
        finally:
            server.terminate()
            exit_code = server.wait(60)
        after = direct(path, images, threads, direct_seconds, max_batch)
    reference = {k: (before[k] + after[k]) / 2 for k in before}
    for level in levels:
        level["ratio_to_direct_b1"] = level["requests_per_s"] / reference["direct_b1"]
        level["ratio_to_direct_batched_decoded"] = (
            level["requests_per_s"] / reference["direct_batched_decoded"]
        )
    return {
        "benchmark": "serve_locust",
        "model": str(model) if model else "tiny random ELoPE (resnet18, 10 classes, 64 px crop, 96 px input)",
        "server_options": options,
        "onnxruntime": ort.__version__,
        "locust": _locust_version(),
        "environment": environment(),
        "direct_images_per_s": {"before": before, "after": after, "mean": reference},
        "levels": levels,
        "server_exit_code_after_sigterm": exit_code,
    }


def _locust_version() -> str:
    from importlib.metadata import version

    return version("locust")


def report(result: dict[str, Any]) -> str:
    """The table of docs/results.md from :func:`run`'s result."""
    env, ref = result["environment"], result["direct_images_per_s"]["mean"]
    lines = [
        f"serve under locust {result['locust']}: {result['model']}, onnxruntime {result['onnxruntime']}, "
        f"server {' '.join(result['server_options'])}",
        f"machine: {env['cpu']}, nproc {env['nproc']}, load average {env.get('loadavg_1min', float('nan')):.1f}",
        f"direct onnxruntime, same photos: {ref['direct_b1']:.1f} images/s (decode + run, batch 1; "
        f"{1e3 / ref['direct_b1']:.1f} ms each), {ref['direct_batched_decoded']:.1f} (decode + run, batched)",
        "| users | requests | req/s | p50 ms | p99 ms | failures | server peak RSS MiB | × direct b1 | × direct batched |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in result["levels"]:
        lines.append(
            f"| {v['users']} | {v['requests']} | {v['requests_per_s']:.1f} | {v['p50_ms']:.0f} | {v['p99_ms']:.0f} "
            f"| {v['failures']} | {v['server_peak_rss_mib']:.0f} | {v['ratio_to_direct_b1']:.2f} "
            f"| {v['ratio_to_direct_batched_decoded']:.2f} |"
        )
    lines.append(f"server exit code after SIGTERM: {result['server_exit_code_after_sigterm']}")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="ONNX file of `elope export` (default: a tiny random one)")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=20.0, help="per level")
    parser.add_argument("--direct-seconds", type=float, default=5.0, help="per direct measurement")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its own)")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch and direct batch")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=None)


if __name__ == "__main__":
    main()
