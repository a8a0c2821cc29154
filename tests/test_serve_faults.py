"""``elope serve`` under faults, on real sockets (loopback only): a burst beyond the queue gets 503s with
Retry-After (not time-outs, not a crash); clients that disconnect mid-upload leave nothing behind; SIGTERM
lets the request in flight finish and exits with 0; a served ONNX file never imports torch; nothing is
written to disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
import httpx
from serve_helpers import jpeg, raw_request_head, read_response, server_process, thread_server

from elope.serve.app import Limits, create_app
from elope.serve.model import ServedModel


def test_a_burst_beyond_the_queue_gets_503s_not_timeouts(served_onnx):
    model = ServedModel(served_onnx, max_pixels=10**7)
    run = model.run
    model.run = lambda batch: (time.sleep(0.3), run(batch))[1]  # type: ignore[method-assign]
    limits = Limits(max_queue=4, max_batch=2, max_wait_ms=1, timeout_s=30)
    data = jpeg()
    with thread_server(create_app(model, limits)) as url:

        def post(_: int) -> httpx.Response:
            return httpx.post(
                url + "/predict", content=data, headers={"content-type": "image/jpeg"}, timeout=20
            )

        with ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(post, range(24)))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503}, codes
        busy = [r for r in responses if r.status_code == 503]
        assert busy and codes.count(200) >= limits.max_queue, codes
        assert all(int(r.headers["retry-after"]) >= 1 and "--max-queue" in r.json()["error"] for r in busy)
        health = httpx.get(url + "/health").json()
        assert health["queued"] == 0 and health["in_flight"] == 0 and health["largest_batch"] <= 2
        model.run = run  # type: ignore[method-assign]
        again = httpx.post(url + "/predict", content=data, headers={"content-type": "image/jpeg"})
        assert again.status_code == 200


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_idle(url: str, pid: int, fds: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        health = httpx.get(url + "/health", headers={"connection": "close"}).json()
        if health["in_flight"] == 0 and health["queued"] == 0 and _open_fds(pid) <= fds:
            return health
        assert time.monotonic() < deadline, (health, _open_fds(pid), fds)
        time.sleep(0.1)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_disconnects_sigterm_drain_no_torch_no_disk(served_onnx, tmp_path):
    scratch, cwd = tmp_path / "tmp", tmp_path / "cwd"
    scratch.mkdir(), cwd.mkdir()
    data = jpeg(640, 480, 3)
    env = {"TMPDIR": str(scratch)}
    with server_process(served_onnx, "--max-wait-ms", "1", env=env, cwd=cwd) as (proc, url):
        baseline = _open_fds(proc.pid)
        for cut in (0, 10, len(data) // 2, len(data) - 1):  # the client goes away mid-upload
            sock, head = raw_request_head(url, len(data))
            sock.sendall(head + data[:cut])
            sock.close()
        health = _wait_idle(url, proc.pid, baseline)
        assert health["answered"] == 0 and health["images"] == 0  # nothing half-read reached the model
        ok = httpx.post(url + "/predict", content=data, headers={"content-type": "image/jpeg"})
        assert ok.status_code == 200
        # SIGTERM while a request is in flight (half its body sent): it is answered, then the server exits 0
        sock, head = raw_request_head(url, len(data))
        sock.sendall(head + data[: len(data) // 2])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):  # no new connections once draining
            httpx.get(url + "/health", timeout=2)
        sock.sendall(data[len(data) // 2 :])
        status, body = read_response(sock)
        sock.close()
        assert status == 200 and json.loads(body)["results"][0]["size"] == [640, 480]
        assert proc.wait(30) == 0
        output = proc.stdout.read()
    assert "TORCH-IMPORTED False" in output, output
    assert list(cwd.iterdir()) == []  # nothing written to disk ...
    assert {p.name for p in scratch.iterdir()} <= _written_by_importing_onnxruntime(tmp_path / "ort")


def _written_by_importing_onnxruntime(folder) -> set[str]:
    """What ``import onnxruntime`` alone leaves in $TMPDIR (onnxruntime 1.32 writes a 51-byte ``.ses``)."""
    folder.mkdir()
    env = {**os.environ, "TMPDIR": str(folder)}
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, check=True, timeout=120)
    return {p.name for p in folder.iterdir()}
