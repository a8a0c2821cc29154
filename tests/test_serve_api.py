"""``elope serve``'s HTTP API through Starlette's test client: the routes, the answers' shapes and meaning,
the options of ``POST /predict``, and the batcher that gathers concurrent images into one onnxruntime call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from serve_helpers import jpeg
from starlette.testclient import TestClient

from elope.page_assets import SHARED_FILES, fill_page, read_shared
from elope.serve.app import Limits, create_app
from elope.serve.batching import Batcher, BatcherClosed, QueueFull
from elope.serve.model import ServedModel


@pytest.fixture(scope="module")
def served(served_onnx):
    return ServedModel(served_onnx, max_pixels=10_000_000)


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served, Limits(max_images=4))) as c:
        yield c


def test_health_model_and_openapi(client, served, served_onnx):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["queued"] == 0 and health["in_flight"] == 0
    info = client.get("/model").json()
    assert info["sha256"] == hashlib.sha256(served_onnx.read_bytes()).hexdigest()
    assert info["classes"] == served.classes and info["num_classes"] == 3
    assert info["input_size"] == 96 and info["tau"] == pytest.approx(0.3) and info["image_size"] == 64
    assert info["outputs"] == ["scores", "boxes", "heatmaps"] and info["embedding"] is False
    assert info["version"]["server"] and info["version"]["onnxruntime"] and info["limits"]["max_images"] == 4
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and set(doc["paths"]) == {
        "/",
        "/health",
        "/model",
        "/openapi.json",
        "/predict",
    }
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "503", "504"} <= set(responses)
    assert info["sha256"] in doc["info"]["description"]


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/predict" in html and 'type="file"' in html
    assert (
        "http://" not in html and "https://" not in html and "<script src" not in html
    )  # no CDN, works offline
    for name in SHARED_FILES:  # the look, cards and script shared with `elope web`'s page, filled in once
        assert html.count(read_shared(name).rstrip("\n")) == 1, name
    assert "{{" not in html and "function drawResult(" in html


@pytest.mark.parametrize("template", ["<p>no marks</p>", "{{elope-page.css}}" * 2])
def test_a_page_without_its_marks_once_is_refused(template):
    with pytest.raises(ValueError, match=r"page.html holds \{\{elope-page.css\}\} [02] times"):
        fill_page(template, "page.html")


def test_predict_multipart_raw_and_several(client):
    data = [jpeg(160, 120, seed) for seed in range(3)]
    one = client.post("/predict", files={"image": ("a.jpg", data[0], "image/jpeg")})
    assert one.status_code == 200, one.text
    result = one.json()["results"][0]
    assert result["name"] == "a.jpg" and result["size"] == [160, 120]
    scores = [c["score"] for c in result["classes"]]
    assert (
        len(scores) == 3
        and scores == sorted(scores, reverse=True)
        and sum(scores) == pytest.approx(1, abs=1e-5)
    )
    x1, y1, x2, y2 = result["box"]
    assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 120 and x2 - x1 > 0
    raw = client.post("/predict", content=data[0], headers={"content-type": "image/jpeg"}).json()["results"][
        0
    ]
    assert raw["classes"] == result["classes"] and raw["box"] == result["box"] and raw["name"] == "body"
    several = client.post(
        "/predict", files=[("images", (f"{i}.jpg", d, "image/jpeg")) for i, d in enumerate(data)]
    )
    results = several.json()["results"]
    assert [r["name"] for r in results] == ["0.jpg", "1.jpg", "2.jpg"]
    alone = [client.post("/predict", content=d, headers={"content-type": "image/jpeg"}).json() for d in data]
    for r, single in zip(results, alone):  # a batch of three answers as three single requests
        assert r["box"] == pytest.approx(single["results"][0]["box"], abs=1e-3)
        assert [c["index"] for c in r["classes"]] == [c["index"] for c in single["results"][0]["classes"]]


def test_heatmap_as_png_and_list_and_absent_embedding(client):
    data = jpeg(120, 90, 5)
    as_list = client.post("/predict?heatmap=list&top=2", content=data, headers={"content-type": "image/jpeg"})
    body = as_list.json()
    grid = np.asarray(body["results"][0]["heatmap"])
    assert grid.shape == (14, 14) and len(body["results"][0]["classes"]) == 2
    as_png = client.post(
        "/predict?heatmap=png&embedding=true", content=data, headers={"content-type": "image/png"}
    )
    body = as_png.json()
    url = body["results"][0]["heatmap"]
    assert url.startswith("data:image/png;base64,")
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    expected = (grid - grid.min()) / (grid.max() - grid.min()) * 255
    assert picture.shape == (14, 14) and np.abs(picture - expected).max() <= 1
    assert body["results"][0]["embedding"] is None and any("embedding absent" in n for n in body["notes"])


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("top=0", "top='0'"),
        ("top=x", "top='x'"),
        ("heatmap=jpg", "heatmap='jpg'"),
        ("embedding=maybe", "embedding"),
        ("colour=1", "unknown query parameter"),
    ],
)
def test_bad_query_is_400(client, query, needle):
    r = client.post(f"/predict?{query}", content=jpeg(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 400 and needle in r.json()["error"]


# ------------------------------------------------------------------------------------------- batcher
def _outputs(batch: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "scores": batch.reshape(len(batch), -1).sum(axis=1, keepdims=True),
        "n": np.full(len(batch), len(batch)),
    }


def test_batcher_gathers_concurrent_images_into_one_call():
    calls: list[int] = []
    gate = threading.Event()

    def run(batch):
        gate.wait(5)  # the first call holds the worker while the others queue up
        calls.append(len(batch))
        return _outputs(batch)

    async def scenario():
        batcher = Batcher(run, max_batch=4, max_wait_ms=50, max_queue=16)
        first = batcher.submit([np.zeros((3, 2, 2), np.float32)])
        await asyncio.sleep(0.1)  # the worker took the first image and waits at the gate
        rest = [batcher.submit([np.full((3, 2, 2), i, np.float32)]) for i in range(1, 7)]
        gate.set()
        answers = await asyncio.gather(*first, *(f for fs in rest for f in fs))
        batcher.close(5)
        return answers

    answers = asyncio.run(scenario())
    assert calls == [1, 4, 2]  # one alone, then the six queued ones in batches of at most four
    assert [float(a["scores"][0]) for a in answers] == [12.0 * i for i in range(7)]  # each got its own row


def test_batcher_waits_for_company_then_runs_a_smaller_batch():
    calls: list[int] = []

    async def scenario():
        batcher = Batcher(
            lambda b: calls.append(len(b)) or _outputs(b), max_batch=8, max_wait_ms=30, max_queue=8
        )
        start = time.monotonic()
        futures = batcher.submit([np.zeros((3, 1, 1), np.float32)] * 2)
        await asyncio.gather(*futures)
        waited = time.monotonic() - start
        batcher.close(5)
        return waited

    waited = asyncio.run(scenario())
    assert calls == [2] and 0.02 <= waited < 2.0


def test_batcher_queue_limit_cancellation_and_close():
    gate = threading.Event()
    calls: list[int] = []

    def run(batch):
        gate.wait(5)
        calls.append(len(batch))
        return _outputs(batch)

    async def scenario():
        batcher = Batcher(run, max_batch=1, max_wait_ms=0, max_queue=2)
        image = np.zeros((3, 1, 1), np.float32)
        busy = batcher.submit([image])
        await asyncio.sleep(0.1)
        queued = batcher.submit([image, image])  # the queue holds two
        with pytest.raises(QueueFull, match="queue limit of 2") as full:
            batcher.submit([image])
        assert full.value.retry_after >= 1
        queued[0].cancel()  # a request that gave up: its image is skipped, not run
        gate.set()
        await asyncio.gather(*busy, queued[1])
        batcher.close(5)
        with pytest.raises(BatcherClosed):
            batcher.submit([image])

    asyncio.run(scenario())
    assert calls == [1, 1]


def test_fixed_batch_file_runs_in_chunks(served, tmp_path, synthetic_root):
    from serve_helpers import export_tiny_model

    fixed = ServedModel(export_tiny_model(synthetic_root, tmp_path / "b2.onnx", batch=2), max_pixels=10**7)
    images = np.random.default_rng(0).normal(size=(3, 3, 96, 96)).astype(np.float32)
    out, ref = fixed.run(images), served.run(images)
    assert fixed.metadata.batch == 2 and out["scores"].shape == (3, 3)
    np.testing.assert_allclose(out["scores"], ref["scores"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["boxes"], ref["boxes"], atol=0.5)
