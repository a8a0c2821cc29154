"""The bad-upload matrix of ``elope serve`` (docs/reliability.md, "Bad uploads"): every case gets a 4xx JSON
error that names what was wrong (and the limit), or, for odd but readable images (16-bit PNG, CMYK JPEG), a
correct answer; never a 500; and the server answers a good request right after each one."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from serve_helpers import cmyk_jpeg, encode, jpeg, photo, png16, png_header_bomb
from starlette.testclient import TestClient

from elope.serve.app import Limits, create_app
from elope.serve.model import ServedModel

LIMITS = Limits(max_upload_bytes=200_000, max_pixels=4_000_000, max_images=3, timeout_s=20)


def _truncated_scan() -> bytes:
    data = jpeg(400, 300, 1)
    return data[: len(data) // 2]  # header intact, scan cut: fails while decoding pixels


def _gif() -> bytes:
    return encode(photo(50, 40, 2).convert("P"), "GIF")


def _multipart(fields: list[tuple[str, bytes]], boundary: str = "XyZ") -> tuple[bytes, str]:
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f{i}.jpg"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, (name, data) in enumerate(fields)
    )
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# name: (body, content type, expected status, words the error must contain)
CASES = {
    "not an image (a PDF)": (
        b"%PDF-1.4\n%\xe2\xe3\n1 0 obj <<>> endobj\n" * 5,
        "image/jpeg",
        415,
        ["not an image", "JPEG"],
    ),
    "text file as jpeg": (b"hello world\n", "image/jpeg", 415, ["not an image"]),
    "header cut short": (jpeg()[:200], "image/jpeg", 400, ["cannot be read"]),
    "truncated jpeg scan": (_truncated_scan(), "image/jpeg", 400, ["cannot be decoded", "truncated"]),
    "header bomb over PIL's limit": (
        png_header_bomb(100_000, 100_000),
        "image/png",
        413,
        ["4000000", "--max-pixels"],
    ),
    "header bomb over ours": (
        png_header_bomb(3000, 2000),
        "image/png",
        413,
        ["6000000", "4000000", "--max-pixels"],
    ),
    "empty raw body": (b"", "image/jpeg", 400, ["empty", "0 bytes"]),
    "no body, no type": (b"", None, 400, ["no image in the request"]),
    "json body": (b'{"image": "x"}', "application/json", 415, ["application/json", "not accepted"]),
    "wrong field": (*_multipart([("file", jpeg())]), 400, ["'file'", "'image'"]),
    "empty multipart part": (*_multipart([("image", b"")]), 400, ["empty"]),
    "multipart without boundary": (b"--x\r\n", "multipart/form-data", 400, ["boundary"]),
    "malformed multipart": (
        b"this is not multipart at all",
        "multipart/form-data; boundary=abc",
        400,
        ["malformed multipart"],
    ),
    "too many images": (
        *_multipart([("images", jpeg())] * 4),
        400,
        ["4 images", "limit of 3", "--max-images"],
    ),
    "body over the upload limit": (b"\xff" * 250_000, "image/jpeg", 413, ["200000", "--max-upload-mb"]),
}
ACCEPTED = {  # odd but readable: converted as `elope predict` converts them
    "16-bit png": (png16(), "image/png"),
    "cmyk jpeg": (cmyk_jpeg(), "image/jpeg"),
    "gif (palette)": (_gif(), "image/gif"),
    "grey+alpha png": (encode(photo(60, 50, 3).convert("LA"), "PNG"), "image/png"),
    "octet-stream": (jpeg(), "application/octet-stream"),
}


@pytest.fixture(scope="module")
def client(served_onnx):
    with TestClient(create_app(ServedModel(served_onnx, max_pixels=LIMITS.max_pixels), LIMITS)) as c:
        yield c


def _post(client, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/predict", content=body, headers=headers)


def _still_serving(client):
    r = _post(client, jpeg(seed=9), "image/jpeg")
    assert r.status_code == 200 and r.json()["results"][0]["classes"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_upload_is_a_clear_4xx(client, case):
    body, content_type, status, words = CASES[case]
    r = _post(client, body, content_type)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["status"] == status and "\n" not in error["error"]
    for word in words:
        assert word in error["error"], (word, error["error"])
    _still_serving(client)


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_odd_but_readable_images_are_answered(client, case):
    body, content_type = ACCEPTED[case]
    r = _post(client, body, content_type)
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    image = Image.open(io.BytesIO(body))
    assert result["size"] == list(image.size)
    assert 0 <= result["box"][0] <= result["box"][2] <= image.width


def test_sixteen_bit_png_is_scaled_not_clipped(client):
    """A 16-bit PNG answers like its 8-bit copy (Image.convert("RGB") would clip it to white)."""
    sixteen = Image.open(io.BytesIO(png16()))
    eight = Image.fromarray(np.rint(np.asarray(sixteen, np.float64) / 257).astype(np.uint8), "L")
    a = _post(client, png16(), "image/png").json()["results"][0]
    b = _post(client, encode(eight, "PNG"), "image/png").json()["results"][0]
    assert [c["index"] for c in a["classes"]] == [c["index"] for c in b["classes"]]
    np.testing.assert_allclose(a["box"], b["box"], atol=0.5)
    white = _post(client, encode(Image.new("L", sixteen.size, 255), "PNG"), "image/png").json()["results"][0]
    assert white["classes"] != a["classes"]


def test_slow_inference_is_a_504_and_the_server_recovers(served_onnx):
    import time

    model = ServedModel(served_onnx, max_pixels=10**7)
    run = model.run
    model.run = lambda batch: (time.sleep(0.5), run(batch))[1]  # type: ignore[method-assign]
    with TestClient(create_app(model, Limits(timeout_s=0.2))) as c:
        r = _post(c, jpeg(), "image/jpeg")
        assert r.status_code == 504 and "timeout of 0.2 s" in r.json()["error"]
        time.sleep(0.6)
        model.run = run  # type: ignore[method-assign]
        _still_serving(c)
        assert c.get("/health").json()["in_flight"] == 0


def test_a_failing_model_is_a_500_json_and_the_server_recovers(served_onnx, caplog):
    """The answer names no internal detail (the exception's text stays in the server's log, one line)."""
    model = ServedModel(served_onnx, max_pixels=10**7)
    run = model.run

    def broken(batch):
        raise RuntimeError(f"onnxruntime fell over in {served_onnx}")

    model.run = broken  # type: ignore[method-assign]
    with TestClient(create_app(model, Limits()), raise_server_exceptions=False) as c:
        r = _post(c, jpeg(), "image/jpeg")
        assert r.status_code == 500 and r.json()["error"].startswith("internal error; the server keeps")
        assert "fell over" not in r.text and "RuntimeError" not in r.text and str(served_onnx) not in r.text
        assert any("RuntimeError: onnxruntime fell over" in m for m in caplog.messages)
        assert len([m for m in caplog.messages if "fell over" in m]) == 1
        model.run = run  # type: ignore[method-assign]
        _still_serving(c)


def test_too_many_requests_in_flight_is_a_503_before_reading(client):
    state = client.app.state.serve
    state.in_flight += LIMITS.max_in_flight  # as if that many were being read, decoded or run
    try:
        r = _post(client, jpeg(), "image/jpeg")
    finally:
        state.in_flight -= LIMITS.max_in_flight
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "--max-in-flight" in r.json()["error"]
    _still_serving(client)
