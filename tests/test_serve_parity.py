"""``elope serve`` answers as ``elope predict --model`` does for the same files (top-k identical, scores
within 1e-4, boxes within 0.5 px): JPEGs small and large (draft decoding), PNGs with alpha, palette, grey and
16 bits, CMYK, BMP, WebP, a JPEG with an EXIF rotation; and it decodes with the package's own torch-free ``elope.pixels``, every mode to RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from serve_helpers import assert_answers_equal, parity_files, photo, png16, upload
from starlette.testclient import TestClient

from elope import pixels
from elope.data.io import exif_orientation as package_exif_orientation
from elope.data.io import to_rgb as package_to_rgb
from elope.serve import images
from elope.serve.app import Limits, create_app
from elope.serve.images import to_rgb
from elope.serve.model import ServedModel
from elope.tasks.predict import predict_paths


def test_answers_equal_elope_predict_model(served_onnx, synthetic_root, tmp_path):
    paths = parity_files(tmp_path, synthetic_root)
    expected = predict_paths(None, paths, top=3, model=served_onnx)
    served = ServedModel(served_onnx, max_pixels=10**8)
    with TestClient(create_app(served, Limits())) as client:
        assert_answers_equal(
            lambda path: client.post("/predict?top=3", files=upload(path)).json(), paths, expected
        )


def _modes() -> dict[str, Image.Image]:
    rgb = photo(40, 30, 12)
    rng = np.random.default_rng(0)
    ints = lambda low, high: Image.fromarray(rng.integers(low, high, (30, 40)).astype(np.int32))  # noqa: E731
    floats = lambda a: Image.fromarray(a.astype(np.float32))  # noqa: E731
    with_nan = rng.uniform(0, 1, (30, 40))
    with_nan[0, :5] = np.nan
    transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    transparent.info["transparency"] = 3
    return {
        "RGB": rgb, "L": rgb.convert("L"), "1": rgb.convert("1"), "P": rgb.convert("P"), "P+t": transparent,
        "LA": rgb.convert("LA"), "RGBA": rgb.convert("RGBA"), "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"), "I;16": Image.open(io.BytesIO(png16(40, 30))),
        "I 8-bit": ints(0, 256), "I 16-bit": ints(0, 65536), "I wide": ints(-5000, 10**6),
        "F unit": floats(rng.uniform(0, 1, (30, 40))), "F byte": floats(rng.uniform(0, 255, (30, 40))),
        "F wide": floats(rng.normal(0, 1000, (30, 40))), "F nan": floats(with_nan),
    }  # fmt: skip


def test_one_decoder_for_the_package_and_the_server():
    """The server decodes tones and orientation with the package's own functions, not a copy of them."""
    assert to_rgb is package_to_rgb is pixels.to_rgb
    assert images.exif_orientation is package_exif_orientation is pixels.exif_orientation


@pytest.mark.parametrize("mode", list(_modes()))
def test_every_mode_decodes_to_rgb_of_its_size(mode):
    image = _modes()[mode]
    rgb = to_rgb(image.copy())
    assert rgb.mode == "RGB" and rgb.size == image.size
    if mode in ("L", "I 8-bit"):  # 8-bit grey keeps its values
        grey = np.asarray(image).astype(np.int64)
        assert np.array_equal(np.asarray(rgb)[..., 0], grey) and np.array_equal(np.asarray(rgb)[..., 2], grey)


def test_serve_reads_an_exported_file_with_the_runtimes_reader():
    """One reader of an exported file: ``elope serve`` and ``deploy/runtime.py`` both open it through
    ``elope.exported`` (the session, its metadata, the fixed-batch chunks), neither on its own."""
    import inspect

    from elope.deploy import runtime
    from elope.serve import model

    for module in (runtime, model):
        text = inspect.getsource(module)
        assert "ExportedSession(" in text and "open_session(" in text, module.__name__
        assert "SessionOptions" not in text and "custom_metadata_map" not in text, module.__name__
