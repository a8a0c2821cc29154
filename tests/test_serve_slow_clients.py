"""Slow and idle clients on real sockets (loopback only, bounded counts): a connection must send its
request head within ``--header-timeout`` (else it is closed, with a 408 when part of a head came), an idle
keep-alive connection is closed after ``--keep-alive-timeout``, ``GET /health`` keeps answering while
hundreds of slow connections are open and past ``--max-connections`` (the oldest waiting one makes room),
and the log stays a few lines. Before, 1,100 connections that sent a request line held every socket,
``/health`` stopped answering and the log grew by a traceback per failed ``accept`` (86,000 in 20 s here).
The numeric options of ``elope serve`` are finite and bounded (``inf`` / ``nan`` / ``--threads 1000``
refused in one line)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httptools")
pytest.importorskip("onnxruntime")
import httpx
from click.testing import CliRunner
from serve_helpers import free_port, jpeg, server_process

from elope.cli import main
from elope.serve.app import Limits, create_app
from elope.serve.model import ServedModel
from elope.serve.server import guarded_server, server_config


@contextlib.contextmanager
def guarded_thread_server(app, **options) -> Iterator[str]:
    """``app`` behind ``elope serve``'s own uvicorn configuration, in a thread: its base URL."""
    port = free_port()
    server = guarded_server(server_config(app, "127.0.0.1", port, grace_s=5, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _slow_sockets(url: str, count: int, first: bytes = b"GET /health HTTP/1.1\r\n") -> list[socket.socket]:
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first:
            sock.sendall(first)
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket, wait_s: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``wait_s`` (b"" for nothing), None if still open."""
    sock.settimeout(wait_s)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return None
    except OSError:  # reset: closed without a word
        return data
    return data


def _health_within(url: str, seconds: float) -> float:
    started = time.monotonic()
    r = httpx.get(url + "/health", timeout=seconds)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    return time.monotonic() - started


def test_hundreds_of_slow_heads_do_not_starve_health_and_are_cut(served_onnx):
    options = ("--header-timeout", "3", "--max-connections", "1000")
    with server_process(served_onnx, *options) as (proc, url):
        sockets = _slow_sockets(url, 300)
        try:
            assert _health_within(url, 3.0) < 3.0  # answered while 300 heads are pending
            answers = [_closed_by_server(s, 8.0) for s in sockets]
        finally:
            for s in sockets:
                s.close()
        assert all(a is not None for a in answers), sum(a is None for a in answers)
        assert all(a.startswith(b"HTTP/1.1 408") and b"--header-timeout" in a for a in answers)
        assert _health_within(url, 3.0) < 3.0
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "Traceback" not in log and len(log.splitlines()) < 20, log[-3000:]
    assert "300 with no complete request head within 3 s" in log or "with no complete request head" in log


def test_past_the_connection_cap_the_oldest_waiting_connection_makes_room(served_onnx):
    with server_process(served_onnx, "--max-connections", "40", "--header-timeout", "60") as (proc, url):
        sockets = _slow_sockets(url, 120)
        try:
            for _ in range(3):  # each probe takes the place of a waiting slow client
                assert _health_within(url, 3.0) < 3.0
            still_open = [s for s in sockets if _closed_by_server(s, 0.05) is None]
            assert len(still_open) <= 40, len(still_open)  # the cap holds: the oldest were cut
        finally:
            for s in sockets:
                s.close()
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "Traceback" not in log and len(log.splitlines()) < 20, log[-3000:]


def test_idle_and_keep_alive_connections_are_closed(served_onnx):
    model = ServedModel(served_onnx, max_pixels=10**6)
    with guarded_thread_server(create_app(model, Limits()), header_timeout_s=1.0, keep_alive_s=1.0) as url:
        (idle,) = _slow_sockets(url, 1, first=b"")
        assert _closed_by_server(idle, 5.0) == b""  # nothing sent: closed without a word
        (kept,) = _slow_sockets(url, 1, first=b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _closed_by_server(kept, 5.0)  # answered, then the idle keep-alive is closed
        assert answer is not None and answer.startswith(b"HTTP/1.1 200")
        idle.close()
        kept.close()


def test_a_slow_but_timely_head_and_a_long_inference_are_not_cut(served_onnx):
    model = ServedModel(served_onnx, max_pixels=10**6)
    run = model.run
    model.run = lambda batch: (time.sleep(2.0), run(batch))[1]  # type: ignore[method-assign]
    with guarded_thread_server(create_app(model, Limits()), header_timeout_s=1.5) as url:
        (sock,) = _slow_sockets(url, 1, first=b"")
        body = jpeg()
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
        for i in range(0, len(head), 8):  # the head in pieces over ~1 s: within the 1.5 s
            sock.sendall(head[i : i + 8].encode())
            time.sleep(1.0 / (len(head) / 8))
        sock.sendall(body)
        answer = _closed_by_server(sock, 15.0) or b""
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]  # 2 s of inference, past the head's 1.5 s


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-wait-ms", "inf"),
        ("--max-wait-ms", "nan"),
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--max-upload-mb", "nan"),
        ("--max-upload-mb", "inf"),
        ("--threads", "1000"),
        ("--max-batch", "100000"),
        ("--max-images", "100000"),
        ("--max-pixels", "10000000000"),
        ("--max-decode-mb", "1"),
        ("--header-timeout", "inf"),
        ("--keep-alive-timeout", "nan"),
        ("--max-connections", "0"),
        ("--decode-threads", "1000"),
    ],
)
def test_numeric_options_are_finite_and_bounded(option, value, tmp_path):
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "m.onnx"), option, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and "Traceback" not in result.output


def test_limits_refuse_what_the_options_refuse():
    for bad in ({"max_wait_ms": float("inf")}, {"timeout_s": float("nan")}, {"max_upload_bytes": 0}):
        with pytest.raises(ValueError, match="must be a finite number"):
            Limits(**bad)


def test_sigterm_during_start_up_ends_the_process_at_once(served_onnx):
    """onnxruntime builds its session (64 threads here) in C++ for seconds; SIGTERM is left to the system
    meanwhile, so it is honoured at once instead of after the build."""
    import signal
    import subprocess
    import sys

    args = [sys.executable, "-m", "elope", "serve", "--model", str(served_onnx), "--threads", "64"]
    args += ["--port", str(free_port())]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3.0)  # importing, then building the session
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert proc.returncode in (-signal.SIGTERM, 143, 0), (proc.returncode, output[-2000:])
    assert "Traceback" not in output
