"""The ``ray`` extra on a local Ray (2 CPUs, started once for the module): ``elope predict --ray`` writes the
answers of ``elope predict --model`` with Ray Data (2 actors; from a folder and from a shard set), and Ray
Serve (``elope serve --backend ray``, 2 replicas) answers the parity checks of ``elope serve`` with
``/health``, ``/model`` and the page. Slow (Ray's start, its workers' imports: about a minute here); the
fast checks of the same code are in tests/test_predict_parts.py."""

from __future__ import annotations

import json
import logging
import signal

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from serve_helpers import assert_answers_equal, parity_files, server_process, upload

pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("ray.serve")

import ray

from elope.cli import main
from elope.serve.model import ServedModel
from elope.tasks.predict import predict_paths
from elope.tasks.predict_parts import find_sources, read_lines

pytestmark = pytest.mark.slow


#: Serve's proxy checks, relaxed for a loaded 2-core machine: its health check gets a minute, not 10 s (its
#: readiness check 5 s); on a loaded 2-core machine the proxy answered late three times and Serve killed it
#: mid-test
SERVE_HEALTH = {
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "30",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's Ray Data tests: 2 CPUs, no dashboard."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def test_serve_command_on_ray_answers_as_elope_serve(served_onnx, synthetic_root, tmp_path):
    """``elope serve --backend ray`` end to end, as a user starts it (about 25 s here, most of it Ray's
    start): its own local Ray (first in the module, before ``local_ray`` starts one in this process), 2
    replicas with Ray Serve's batching; the parity files of ``elope serve`` answered as ``elope predict
    --model`` answers them, ``/health``, ``/model``, the page and a refused upload as the built-in server's;
    and SIGTERM, sent as soon as it has answered, ending it with exit status 0."""
    paths = parity_files(tmp_path, synthetic_root)  # draft decoding, EXIF, CMYK, ...: varied answers
    expected = predict_paths(None, paths, top=3, model=served_onnx)
    options = ("--backend", "ray", "--replicas", "2", "--max-batch", "4", "--max-wait-ms", "20")
    with server_process(served_onnx, *options, env=SERVE_HEALTH, wait_s=240) as (proc, url):
        with httpx.Client(base_url=url, timeout=60) as client:
            health = client.get("/health").json()
            assert health["status"] == "ok" and health["backend"] == "ray"
            assert_answers_equal(
                lambda p: client.post("/predict?top=3", files=upload(p)).json(), paths, expected
            )
            described = ServedModel(served_onnx, max_pixels=10**8).describe()
            model = client.get("/model").json()
            assert model["sha256"] == described["sha256"] and model["file"] == served_onnx.name
            assert model["classes"] == described["classes"] and model["limits"]["max_batch"] == 4
            page = client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            refused = client.post("/predict", content=b"junk", headers={"content-type": "image/jpeg"})
            assert refused.status_code == 415 and refused.json()["status"] == 415
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert code == 0, proc.stdout.read()[-3000:]


def test_ray_data_lines_equal_predict_model(local_ray, served_onnx, synthetic_root, tmp_path):
    images = synthetic_root / "CUB_200_2011" / "images"
    out = tmp_path / "results"
    args = ["predict", "--model", served_onnx, "--ray", images, "--out", out, "--top", 3]
    result = CliRunner().invoke(
        main, [*map(str, [*args, "--actors", 2, "--batch-size", 4, "--part-size", 7])]
    )
    assert result.exit_code == 0, result.output
    assert "3 part(s) written now, 0 already there" in result.output
    files, _ = find_sources([images])
    expected = predict_paths(None, files, top=3, model=served_onnx)
    assert_lines_close(read_lines(out), expected)
    assert len({tuple(c["index"] for c in e["classes"]) for e in expected}) > 1


def assert_lines_close(got, expected) -> None:
    """The lines of Ray's parts are ``elope predict --model``'s: the same paths in order, classes and
    sizes; scores and boxes to float precision (batched otherwise)."""
    assert [g["path"] for g in got] == [e["path"] for e in expected] and len(got) == 18
    for g, e in zip(got, expected):  # the same decoding and session: the same numbers
        assert g["size"] == e["size"] and [c["class"] for c in g["classes"]] == [
            c["class"] for c in e["classes"]
        ]
        np.testing.assert_allclose(
            [c["score"] for c in g["classes"]], [c["score"] for c in e["classes"]], atol=1e-6
        )
        np.testing.assert_allclose(g["box"], e["box"], atol=1e-4)


def test_ray_data_reads_a_shard_set(local_ray, served_onnx, synthetic_shards, tmp_path, monkeypatch):
    """A shard set as SOURCE: each actor reads its images from the shards by byte range (the driver hands
    over places, never bytes), and the lines are those of ``elope predict --model`` on the set."""
    from elope.tasks import ray_predict

    seen = []
    rows = ray_predict._where
    monkeypatch.setattr(
        ray_predict, "_where", lambda path, shards: seen.append(rows(path, shards)) or seen[-1]
    )
    out = tmp_path / "results"
    args = ["predict", "--model", served_onnx, "--ray", synthetic_shards, "--out", out, "--top", 3]
    result = CliRunner().invoke(main, [*map(str, [*args, "--batch-size", 8, "--part-size", 10])])
    assert result.exit_code == 0, result.output
    assert "2 part(s) written now, 0 already there" in result.output
    assert len(seen) == 18 and all(json.loads(w)[0] == str(synthetic_shards) for w in seen)
    assert_lines_close(read_lines(out), predict_paths(None, [synthetic_shards], top=3, model=served_onnx))


def test_serve_command_hands_the_file_to_ray_serve(served_onnx, monkeypatch):
    """``elope serve --backend ray``: the file's bytes, its name, the limits and the replicas reach the Ray
    Serve application (serving itself: the test above); Ray's options need the ray backend."""
    from elope.serve import ray_serve

    seen = {}
    monkeypatch.setattr(
        ray_serve, "run_on_ray", lambda app, host, port, address: seen.update(app=app, port=port)
    )
    args = ["serve", "--model", str(served_onnx), "--backend", "ray", "--replicas", "3", "--max-batch", "4"]
    result = CliRunner().invoke(main, [*args, "--port", "8123"])
    assert result.exit_code == 0, result.output
    deployment = seen["app"]._bound_deployment  # Ray Serve's Application: the bound deployment
    data, label, limits, _threads = deployment.init_args
    assert deployment.num_replicas == 3 and seen["port"] == 8123
    assert data == served_onnx.read_bytes() and label == served_onnx.name and limits["max_batch"] == 4
    builtin = CliRunner().invoke(main, ["serve", "--model", str(served_onnx), "--replicas", "2"])
    assert builtin.exit_code == 2 and "--backend ray" in builtin.output
