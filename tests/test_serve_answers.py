"""No answer of ``elope serve`` carries an internal detail: a sweep of odd requests (methods, paths, query
strings, bodies) gets 4xx answers, none with a path of the server, a stack, an exception's class or text
or an object's address; ``top`` in any Unicode digit or 5,000 digits long is a 400 naming it (it was a 500
with Python's own message); a 405 says which methods the route takes (``Allow``); ``GET /model`` of
``serve --run /abs/path`` names the run, not where it lies."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from serve_helpers import REPO, encode, jpeg, photo, png16, png_header_bomb
from starlette.testclient import TestClient

from elope.serve.app import Limits, create_app
from elope.serve.model import ServedModel

INTERNAL = ("Traceback", 'File "', "Error:", "Exception", " object at 0x", "<_io.", "site-packages")


@pytest.fixture(scope="module")
def client(served_onnx):
    model = ServedModel(served_onnx, max_pixels=10_000_000)
    with TestClient(create_app(model, Limits(max_images=4, max_upload_bytes=2**20))) as c:
        yield c


def _internal(text: str, served_onnx: Path) -> list[str]:
    paths = {str(served_onnx.parent), str(REPO), os.getcwd(), sys.prefix, str(Path.home())} - {"/"}
    return [needle for needle in (*INTERNAL, *paths) if needle in text]


@pytest.mark.parametrize("top", ["²", "١٢", "１", "9" * 5000, "-1", "1.5", " 1", "0x10", "1e3", "0", "", "⁵"])
def test_top_outside_ascii_digits_is_a_400_naming_it(client, top):
    r = client.post("/predict", params={"top": top}, content=jpeg(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("top=") and "a whole number from 1 to 999999999" in error and len(error) < 160


def test_a_large_top_means_every_class(client):
    r = client.post("/predict?top=999999999", content=jpeg(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and len(r.json()["results"][0]["classes"]) == 3


def test_405_says_which_methods_the_route_takes(client):
    for method, path, allowed in [
        ("PUT", "/predict", "POST"),
        ("DELETE", "/health", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 405 and r.headers["allow"] == allowed, (method, path, r.headers)
        assert r.json()["status"] == 405


def _sweep() -> list[tuple[str, str, dict]]:
    """(method, path, request options) of odd requests."""
    png = encode(photo(40, 30), "PNG")
    bad_tiff = b"II*\x00" + b"\xff" * 60
    return [
        ("GET", "/nope", {}),
        ("GET", "/../../etc/passwd", {}),
        ("GET", "/predict/%00", {}),
        ("GET", "/" + "a" * 5000, {}),
        ("PATCH", "/model", {}),
        ("GET", "/predict", {}),
        ("POST", "/predict?" + "&".join(f"k{i}=1" for i in range(200)), {"content": png}),
        ("POST", "/predict?ünïcode=1", {"content": png}),
        ("POST", "/predict?heatmap=" + "x" * 3000, {"content": png}),
        ("POST", "/predict?embedding=%00", {"content": png}),
        ("POST", "/predict", {"content": b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "headers": {"content-type": "image/png"}}),
        ("POST", "/predict", {"content": png[: len(png) // 2], "headers": {"content-type": "image/png"}}),
        ("POST", "/predict", {"content": bad_tiff, "headers": {"content-type": "image/tiff"}}),
        ("POST", "/predict", {"content": b"GIF89a" + b"\x01" * 20, "headers": {"content-type": "image/gif"}}),
        ("POST", "/predict", {"content": png_header_bomb(50_000, 50_000), "headers": {"content-type": "image/png"}}),
        ("POST", "/predict", {"content": os.urandom(5000), "headers": {"content-type": "image/jpeg"}}),
        ("POST", "/predict", {"content": b"%PDF-1.4 " + b"x" * 100, "headers": {"content-type": "application/pdf"}}),
        ("POST", "/predict", {"content": b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
        ("POST", "/predict", {"content": b"--x--\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
        ("POST", "/predict", {"content": b"{}", "headers": {"content-type": "multipart/form-data"}}),
        ("POST", "/predict", {"content": b"", "headers": {"content-type": "text/plain; charset=\x7f"}}),
        ("POST", "/predict", {"files": {"image": ("../../../etc/passwd", png16(), "image/png")}}),
        ("POST", "/predict", {"files": [("images", (f"{i}.png", png, "image/png")) for i in range(5)]}),
        ("POST", "/predict", {"content": b"x" * (2**20 + 1), "headers": {"content-type": "image/png"}}),
    ]  # fmt: skip


def test_no_answer_carries_an_internal_detail(client, served_onnx):
    found = {}
    for method, path, options in _sweep():
        r = client.request(method, path, **options)
        assert r.status_code < 500, (method, path[:60], r.status_code, r.text[:300])
        if leaks := _internal(r.text + json.dumps(dict(r.headers)), served_onnx):
            found[f"{method} {path[:60]}"] = (leaks, r.text[:300])
    for route in ("/model", "/openapi.json", "/health", "/"):
        if leaks := _internal(client.get(route).text, served_onnx):
            found[route] = leaks
    assert not found, found


def test_model_of_serve_run_names_the_run_not_its_path(synthetic_root, tmp_path):
    pytest.importorskip("onnx")
    from serve_helpers import tiny_model

    from elope.commands.serve import _load
    from elope.runs.model_folder import save_model

    model, classes = tiny_model(synthetic_root)
    save_model(model, tmp_path / "myrun" / "model", {"classes": classes, "dataset": "synthetic", "root": "x"})
    served = _load(None, (tmp_path / "myrun").resolve(), None, 10**7)
    with TestClient(create_app(served, Limits())) as c:
        texts = [c.get(route).text for route in ("/model", "/openapi.json")]
    assert "myrun (exported)" in texts[0]
    assert not any(str(tmp_path) in text for text in texts)
