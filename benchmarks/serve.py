"""Load on ``elope serve`` (issue 19): N concurrent clients on the loopback against a real server process,
and the same images through onnxruntime directly, in one run.

* The server: ``elope serve --model FILE`` in a subprocess (torch-free, as deployed), dynamic batching
  ``--max-batch`` / ``--max-wait-ms``; its resident memory (``/proc/PID/status`` VmRSS) is sampled every
  0.1 s.
* The clients: one asyncio coroutine per client, each on its own keep-alive HTTP/1.1 connection (a minimal
  hand-written client: httpx would cost the 2-core machine more CPU than the server), posting JPEG photos
  of mixed sizes as raw ``image/jpeg`` bodies back to back. Each level (N = 1, 4, 16, 64) stops after
  ``--seconds`` or ``--requests``, whichever comes first. Reported: requests/s, p50 / p95 / p99 latency,
  errors (anything but 200, connection failures), peak server memory.
* Direct: the same photos decoded and normalised exactly as the server does (:mod:`elope.serve.images`) and
  run one by one in an onnxruntime session in this process (``direct_b1``, what a script without a server
  does); decoded and run in batches of ``--max-batch`` (``direct_batched_decoded``, the same work as the
  server with none of HTTP); and, inference only, in batches (``direct_batched``). Measured before and
  after the load levels; the mean is the reference of the ratios ``served / direct``.
* Soak: ``--soak`` requests (10,000 by default) at 16 clients, the server's memory after every tenth of
  them: flat means the last reading within a few MiB of the second.

Without ``--model`` a tiny random ELoPE (resnet18, 10 classes, 64 px classifier, 96 px input) is exported
first, so that 10,000 requests take a minute or two on 2 cores. Loopback only; every loop is bounded.

    python -m benchmarks.serve                                    # the table of docs/results.md
    python -m benchmarks.serve --model demo.onnx --clients 16 --seconds 20 --soak 0
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import benchmark_main, environment
from elope.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- model and photos
def tiny_model(path: Path, num_classes: int = 10, input_size: int = 96) -> Path:
    """A random ELoPE (resnet18, embedding 16, 64 px classifier) exported with a dynamic batch."""
    import torch

    from elope.deploy.export import export_model
    from elope.nn.model import ELoPE

    torch.manual_seed(0)
    model = ELoPE(
        "resnet18", num_classes, embedding_dim=16, k=2, spec=ModelSpec(image_size=64, crop_source=input_size)
    ).eval()
    classes = [f"class {i}" for i in range(num_classes)]
    return export_model(model, path, classes=classes, batch=None)


def photos(count: int = 16, seed: int = 0) -> list[bytes]:
    """JPEG photos (quality 90) of mixed sizes from 320x240 to 800x600: smooth colour fields and noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        w, h = [(320, 240), (480, 360), (640, 480), (800, 600)][i % 4]
        field = rng.uniform(0, 255, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(field).resize((w, h), Image.BICUBIC)
        noisy = np.asarray(image, np.float32) + rng.normal(0, 8, (h, w, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


# ------------------------------------------------------------------------------------------ direct
def direct(
    model: Path, images: list[bytes], threads: int | None, seconds: float, batch: int
) -> dict[str, float]:
    """Images/s through onnxruntime in this process: decode + run one by one; decode + run in batches of
    ``batch``; and run only, batched."""
    from elope.serve.images import decode_image
    from elope.serve.model import ServedModel

    served = ServedModel(model, threads=threads, max_pixels=10**8)
    prep = served.preprocess
    arrays = [decode_image(d, prep).array for d in images]
    stacked = np.stack([arrays[i % len(arrays)] for i in range(batch)])
    served.run(stacked)  # warm-up
    result = {}

    def decoded_batch(i: int) -> Any:
        picked = [images[(i * batch + j) % len(images)] for j in range(batch)]
        return served.run(np.stack([decode_image(d, prep).array for d in picked]))

    for name, step, per_call in [
        ("direct_b1", lambda i: served.run(decode_image(images[i % len(images)], prep).array[None]), 1),
        ("direct_batched_decoded", decoded_batch, batch),
        ("direct_batched", lambda i: served.run(stacked), batch),
    ]:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step(count)
            count += 1
        result[name] = count * per_call / (time.perf_counter() - start)
    return result


# ------------------------------------------------------------------------------------------ server
class RssSampler(threading.Thread):
    """The resident memory (MiB) of process ``pid``, sampled every ``interval`` s until :meth:`stop`."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop_event = threading.Event()

    def now(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.now())
            except OSError:
                return
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def start_server(model: Path, port: int, options: Sequence[str]) -> subprocess.Popen:
    """``elope serve`` in a subprocess; returns once ``/health`` answers (at most 180 s: ``--backend ray``
    starts Ray and its replicas first)."""
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "elope", "serve", "--model", str(model), "--port", str(port), *options]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("elope serve did not start within 180 s")


# ------------------------------------------------------------------------------------------ clients
async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    writer.write(head + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _client(port: int, images: list[bytes], offset: int, state: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < state["deadline"] and state["sent"] < state["limit"]:
            state["sent"] += 1
            body = images[i % len(images)]
            head = (
                f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            try:
                status = await _post(reader, writer, head, body)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                state["errors"] += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            state["latencies"].append(time.perf_counter() - start)
            state["errors"] += status != 200
            i += 1
    finally:
        writer.close()


async def _level(port: int, images: list[bytes], clients: int, seconds: float, limit: int) -> dict[str, Any]:
    state: dict[str, Any] = {"deadline": time.perf_counter() + seconds, "sent": 0, "limit": limit,
                             "latencies": [], "errors": 0}  # fmt: skip
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, images, k, state) for k in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.asarray(state["latencies"]) * 1e3
    p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if len(lat) else (float("nan"),) * 3
    return {
        "clients": clients,
        "requests": len(lat),
        "seconds": round(elapsed, 2),
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "errors": int(state["errors"]),
    }


def load_level(port: int, pid: int, images: list[bytes], clients: int, seconds: float, limit: int) -> dict:
    """One load level against the server on ``port``, with the peak memory of ``pid`` during it."""
    sampler = RssSampler(pid)
    sampler.start()
    try:
        result = asyncio.run(_level(port, images, clients, seconds, limit))
    finally:
        sampler.stop()
    return {**result, "server_peak_rss_mib": round(sampler.peak, 1)}


def soak(port: int, pid: int, images: list[bytes], total: int, clients: int = 16) -> dict[str, Any]:
    """``total`` requests at ``clients``; the server's memory after every tenth of them."""
    sampler = RssSampler(pid)
    readings, errors, done = [round(sampler.now(), 1)], 0, 0
    step = max(1, total // 10)
    while done < total:
        chunk = asyncio.run(_level(port, images, clients, 600.0, min(step, total - done)))
        done += chunk["requests"] + chunk["errors"]
        errors += chunk["errors"]
        readings.append(round(sampler.now(), 1))
    return {"requests": done, "clients": clients, "errors": errors, "rss_mib": readings,
            "growth_after_first_tenth_mib": round(readings[-1] - readings[1], 1)}  # fmt: skip


# ------------------------------------------------------------------------------------------ the run
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_batch(options: Sequence[str]) -> int:
    return int(options[list(options).index("--max-batch") + 1]) if "--max-batch" in options else 8


def run(model: Path | None, clients: Sequence[int], seconds: float, requests: int, soak_requests: int,
        threads: int | None, server_options: Sequence[str], direct_seconds: float) -> dict[str, Any]:  # fmt: skip
    """The whole benchmark; returns a JSON-able dict."""
    import onnxruntime as ort

    from elope.exported import file_sha256

    images = photos()
    options = [*server_options, *(["--threads", str(threads)] if threads else [])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(model) if model else tiny_model(Path(tmp) / "tiny.onnx")
        batch = _max_batch(options)
        before = direct(path, images, threads, direct_seconds, batch)
        port = _free_port()
        server = start_server(path, port, options)
        try:
            levels = [load_level(port, server.pid, images, n, seconds, requests) for n in clients]
            soaked = soak(port, server.pid, images, soak_requests) if soak_requests else None
        finally:
            server.terminate()
            exit_code = server.wait(60)
        after = direct(path, images, threads, direct_seconds, batch)
    reference = {k: (before[k] + after[k]) / 2 for k in before}
    for level in levels:
        level["ratio_to_direct_b1"] = level["requests_per_s"] / reference["direct_b1"]
        level["ratio_to_direct_batched_decoded"] = (
            level["requests_per_s"] / reference["direct_batched_decoded"]
        )
        level["ratio_to_direct_batched"] = level["requests_per_s"] / reference["direct_batched"]
    return {
        "benchmark": "serve",
        "model": str(model) if model else "tiny random ELoPE (resnet18, 10 classes, 64 px crop, 96 px input)",
        "model_sha256": None if not model else file_sha256(Path(model)),
        "server_options": options,
        "onnxruntime": ort.__version__,
        "environment": environment(),
        "direct_images_per_s": {"before": before, "after": after, "mean": reference},
        "levels": levels,
        "soak": soaked,
        "server_exit_code_after_sigterm": exit_code,
    }


def report(result: dict[str, Any]) -> str:
    """The human-readable table of :func:`run`'s result."""
    env, ref = result["environment"], result["direct_images_per_s"]["mean"]
    lines = [
        f"serve: {result['model']}, onnxruntime {result['onnxruntime']}, server {' '.join(result['server_options'])}",
        f"machine: {env['cpu']}, nproc {env['nproc']}, load average {env.get('loadavg_1min', float('nan')):.1f}",
        f"direct onnxruntime: {ref['direct_b1']:.1f} images/s (decode + run, batch 1), "
        f"{ref['direct_batched_decoded']:.1f} (decode + run, batched), {ref['direct_batched']:.1f} (run only, batched)",
        "| clients | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server peak RSS MiB | × direct b1 "
        "| × direct batched | × direct batched, run only |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in result["levels"]:
        lines.append(
            f"| {v['clients']} | {v['requests']} | {v['requests_per_s']:.1f} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} "
            f"| {v['p99_ms']:.1f} | {v['errors']} | {v['server_peak_rss_mib']:.0f} | {v['ratio_to_direct_b1']:.2f} "
            f"| {v['ratio_to_direct_batched_decoded']:.2f} | {v['ratio_to_direct_batched']:.2f} |"
        )
    if soak := result["soak"]:
        lines.append(
            f"soak: {soak['requests']} requests at {soak['clients']} clients, {soak['errors']} errors, server RSS "
            f"MiB by tenths {soak['rss_mib']}, growth after the first tenth {soak['growth_after_first_tenth_mib']} MiB"
        )
    lines.append(f"server exit code after SIGTERM: {result['server_exit_code_after_sigterm']}")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="ONNX file of `elope export` (default: a tiny random one)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per level")
    parser.add_argument("--requests", type=int, default=3000, help="at most this many requests per level")
    parser.add_argument(
        "--soak", dest="soak_requests", type=int, default=10_000, help="requests of the memory soak (0: none)"
    )
    parser.add_argument("--direct-seconds", type=float, default=5.0, help="per direct measurement")
    parser.add_argument(
        "--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)"
    )
    parser.add_argument(
        "--server",
        dest="server_options",
        nargs=argparse.REMAINDER,
        default=[],
        help="more `elope serve` options",
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=None)


if __name__ == "__main__":
    main()
