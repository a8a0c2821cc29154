"""Helpers of the ``elope serve`` tests (tests/test_serve_*.py): the tiny exported model, a real server in a
subprocess on a free loopback port, and photos of every kind, good and bad, made in memory."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from elope.spec import ModelSpec

SOURCE = 96  # the exported input side N
TAU = 0.3
REPO = Path(__file__).resolve().parents[1]


def varied_model(images):
    """A random resnet18 ELoPE made to give varied boxes and classes on the procedural ``images``: the
    heatmap is one stem channel (localized blobs), the classifier's rows are three images' centred
    embeddings (also tests/test_deploy_export.py's model)."""
    import torch

    from elope.nn.model import ELoPE

    torch.manual_seed(0)
    model = ELoPE(
        "resnet18", 3, embedding_dim=16, k=2, spec=ModelSpec(image_size=64, crop_source=SOURCE, tau=TAU)
    ).eval()
    with torch.no_grad():
        model.localizer.head.weight.zero_()
        model.localizer.head.weight[0, 0, 1, 1] = 1.0
        crops, _, _ = model.crop(images)
        _, emb = model(crops, return_embeddings=True)
        centre = emb.mean(dim=0)
        rows = emb[[0, 2, 4]] - centre
        weight = 5.0 * rows / rows.norm(dim=1, keepdim=True)
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-weight @ centre)
    return model


def tiny_model(synthetic_root: Path):
    """:func:`varied_model` on the procedural test split, and its class names."""
    import torch

    from elope.data import build_dataset, eval_transform

    ds = build_dataset("synthetic", synthetic_root, "test", transform=eval_transform(SOURCE))
    images = torch.stack([ds[i][0] for i in range(len(ds))]).as_subclass(torch.Tensor)
    return varied_model(images), ds.classes


def export_tiny_model(synthetic_root: Path, path: Path, batch: int | None = None) -> Path:
    """:func:`tiny_model` exported to ONNX (dynamic batch by default)."""
    from elope.deploy.export import export_model

    model, classes = tiny_model(synthetic_root)
    return export_model(model, path, classes=classes, batch=batch)


# ------------------------------------------------------------------------------------------ photos
def photo(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """A smooth random RGB photo with a bright blob (something for the heatmap to find)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    blob = np.exp(-(((x - cx) / (0.15 * width)) ** 2 + ((y - cy) / (0.15 * height)) ** 2))
    base = rng.uniform(40, 120, size=3)
    pixels = (
        base + 130 * blob[..., None] * rng.uniform(0.5, 1.0, size=3) + rng.normal(0, 6, (height, width, 3))
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 160, height: int = 120, seed: int = 0) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=90)


def png16(width: int = 90, height: int = 70) -> bytes:
    """A 16-bit greyscale PNG (mode I;16) with tones over the whole 0..65535 range."""
    grey = np.asarray(photo(width, height, 3).convert("L"), np.uint16) * 257
    image = Image.fromarray(grey)
    assert image.mode == "I;16", image.mode
    return encode(image, "PNG")


def cmyk_jpeg(width: int = 120, height: int = 100) -> bytes:
    return encode(photo(width, height, 4).convert("CMYK"), "JPEG", quality=90)


def png_header_bomb(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels, with a few bytes of compressed data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------ a real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(
    model: Path,
    *options: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    wait_s: float = 60.0,
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``elope serve --model MODEL`` in a subprocess on a free loopback port: ``(process, base URL)``.

    At exit the process prints whether torch was imported (``TORCH-IMPORTED True|False``, an atexit hook
    placed before the command runs). Stopped with SIGTERM at the end if still running."""
    import httpx

    port = free_port()
    code = (
        "import atexit, sys; atexit.register(lambda: print('TORCH-IMPORTED', 'torch' in sys.modules, flush=True));"
        "from elope.cli import main; main()"
    )
    args = [sys.executable, "-c", code, "serve", "--model", str(model), "--port", str(port), *options]
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.Popen(
        args, env=environment, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"elope serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"elope serve did not answer within {wait_s} s")
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def thread_server(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread of this process: its base URL."""
    import threading

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def raw_request_head(
    url: str, body_length: int, content_type: str = "image/jpeg"
) -> tuple[socket.socket, bytes]:
    """An open socket to ``url`` and the head of a ``POST /predict`` announcing ``body_length`` bytes."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {body_length}\r\nConnection: close\r\n\r\n"
    ).encode()
    return sock, head


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status code and body of the HTTP/1.1 response on ``sock`` (read until the server closes)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# ------------------------------------------------------------------ a small graph with chosen metadata
def good_metadata(classes: int = 3, side: int = 32) -> dict:
    """The metadata `elope export` writes for :func:`metadata_graph` (a dynamic batch, no heatmap)."""
    return {
        "format": "elope-export",
        "version": 2,
        "exported_as": "onnx",
        "classes": [f"class {i}" for i in range(classes)],
        "spec": {
            "image_size": side,
            "crop_source": side,
            "tau": 0.3,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "box_margin": 0.0,
            "box_rule": "all",
            "heatmap_upsample": False,
            "localizer_input": 64,
        },
        "batch": "dynamic",
        "outputs": ["scores", "boxes"],
        "tta": None,
    }


def version_1_metadata(classes: int = 3, side: int = 32) -> dict:
    """The metadata of :func:`good_metadata` as elope wrote it before the spec was stored whole (export
    format version 1: the spec's values at the top level, the crop source named ``input_size``, the box
    rule and the upsampling among the constructor arguments under ``model``, no box margin)."""
    return {
        "format": "elope-export",
        "version": 1,
        "exported_as": "onnx",
        "classes": [f"class {i}" for i in range(classes)],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "input_size": side,
        "image_size": side,
        "batch": "dynamic",
        "tau": 0.3,
        "outputs": ["scores", "boxes"],
        "model": {
            "backbone": "resnet18",
            "localizer_input": 64,
            "heatmap_upsample": False,
            "box_rule": "all",
        },
        "tta": None,
    }


def metadata_graph(path: Path, metadata: dict | str, classes: int = 3, side: int = 32) -> Path:
    """A small ONNX graph with the inputs and outputs of `elope export` (images (B, 3, side, side) ->
    scores (B, classes), boxes (B, 4)) and ``metadata`` (a dict, or the raw text) as its ``elope`` entry:
    what the metadata checks of `elope serve` and `elope predict --model` read, in a few kB."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(3, classes)).astype(np.float32), "w")
    box = numpy_helper.from_array(np.float32([[0, 0, side, side]]), "box")
    zero = numpy_helper.from_array(np.zeros((3, 4), np.float32), "zero")
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
        helper.make_node("MatMul", ["flat", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "box"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes,
        "metadata-graph",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, side, side])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 4]),
        ],
        initializer=[weights, box, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "elope", metadata if isinstance(metadata, str) else json.dumps(metadata)
    onnx.save(model, path)
    return path


# --------------------------------------------------------------------- large images in few bytes
def large_image(kind: str, side: int) -> bytes:
    """A ``side`` x ``side`` image of ``kind`` that compresses to little (rows of a few tones): what an
    upload under ``--max-upload-mb`` may decode to. Kinds: png16, tiff-int32, tiff-float, png-rgba,
    png-palette-alpha, png-grey, png-rgb, tiff-cmyk, jpeg, bmp-grey, gif, webp."""
    x = np.arange(side, dtype=np.uint32)[None, :] // 64
    y = np.arange(side, dtype=np.uint32)[:, None] // 64
    tone = np.broadcast_to((x * 5 + y * 3) % 256, (side, side)).astype(np.uint8)
    if kind == "png16":
        return encode(Image.fromarray(tone.astype(np.uint16) * 257), "PNG", compress_level=1)
    if kind == "tiff-int32":
        return encode(
            Image.fromarray(tone.astype(np.int32) * 1000, "I"), "TIFF", compression="tiff_adobe_deflate"
        )
    if kind == "tiff-float":
        return encode(
            Image.fromarray(tone.astype(np.float32) / 7.0, "F"), "TIFF", compression="tiff_adobe_deflate"
        )
    rgb = Image.merge("RGB", [Image.fromarray(tone), Image.fromarray(255 - tone), Image.fromarray(tone // 2)])
    if kind == "png-rgba":
        return encode(Image.merge("RGBA", [*rgb.split(), Image.fromarray(tone)]), "PNG", compress_level=1)
    if kind == "png-palette-alpha":
        palette = rgb.quantize(16)
        palette.info["transparency"] = 3
        return encode(palette, "PNG", compress_level=1)
    if kind == "png-grey":
        return encode(Image.fromarray(tone), "PNG", compress_level=1)
    if kind == "png-rgb":
        return encode(rgb, "PNG", compress_level=1)
    if kind == "tiff-cmyk":
        return encode(rgb.convert("CMYK"), "TIFF", compression="tiff_adobe_deflate")
    if kind == "jpeg":
        return encode(rgb, "JPEG", quality=50)
    if kind == "bmp-grey":
        return encode(Image.fromarray(tone), "BMP")
    if kind == "gif":
        return encode(rgb.quantize(16), "GIF")
    if kind == "webp":
        return encode(rgb, "WEBP", quality=50, method=0)
    raise ValueError(kind)


# --------------------------------------------------------------------- parity with `elope predict --model`
def _rotated_exif(orientation: int) -> bytes:
    """An EXIF block with only the orientation tag (274), as a phone camera writes it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def parity_files(folder: Path, synthetic_root: Path) -> list[Path]:
    """Photos of every kind the parity tests send (written to ``folder``) and four procedural JPEGs:
    JPEGs small and large (draft decoding), PNGs with alpha, palette, grey and 16 bits, CMYK, BMP, WebP, a
    JPEG with an EXIF rotation."""
    rgba = photo(130, 100, 7).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 130, dtype=np.uint8), (100, 1))))
    palette = photo(100, 80, 8).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    palette.info["transparency"] = 0
    made = {
        "large.jpg": encode(photo(900, 700, 1), "JPEG", quality=92),  # draft decoding at 1/4
        "wide.jpg": encode(photo(400, 150, 2), "JPEG", quality=85),
        "alpha.png": encode(rgba, "PNG"),
        "palette.png": encode(palette, "PNG", transparency=0),
        "grey.png": encode(photo(70, 90, 9).convert("L"), "PNG"),
        "sixteen.png": png16(),
        "cmyk.jpg": cmyk_jpeg(),
        "photo.bmp": encode(photo(64, 64, 10), "BMP"),
        "photo.webp": encode(photo(120, 80, 11), "WEBP", lossless=True),
        "phone.jpg": encode(photo(160, 90, 13), "JPEG", quality=90, exif=_rotated_exif(6)),  # shown 90x160
    }
    paths = sorted((synthetic_root / "CUB_200_2011" / "images").rglob("*.jpg"))[:4]
    for name, data in made.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def upload(path: Path) -> dict:
    """The multipart ``files`` of one image for ``POST /predict``."""
    return {"image": (path.name, path.read_bytes())}


def assert_answers_equal(post, paths: list[Path], expected: list[dict]) -> None:
    """``post(path)`` (the JSON body of ``POST /predict?top=3`` with that image) answers as ``expected``
    (``elope predict --model``'s items): size and top-k identical, scores within 1e-4, boxes within 0.5 px;
    and the files do not all get the same answer (the comparison can fail)."""
    for path, want in zip(paths, expected):
        result = post(path)["results"][0]
        assert result["size"] == want["size"], path.name
        assert [c["index"] for c in result["classes"]] == [c["index"] for c in want["classes"]], path.name
        np.testing.assert_allclose(
            [c["score"] for c in result["classes"]], [c["score"] for c in want["classes"]], atol=1e-4
        )
        np.testing.assert_allclose(result["box"], want["box"], atol=0.5, err_msg=path.name)
    assert len({tuple(c["index"] for c in w["classes"]) for w in expected}) > 1
