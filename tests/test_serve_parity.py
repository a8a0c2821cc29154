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

from serve_helpers import cmyk_jpeg, encode, photo, png16
from starlette.testclient import TestClient

from elope import pixels
from elope.data.io import exif_orientation as package_exif_orientation
from elope.data.io import to_rgb as package_to_rgb
from elope.serve import images
from elope.serve.app import Limits, create_app
from elope.serve.images import to_rgb
from elope.serve.model import ServedModel
from elope.tasks.predict import predict_paths


def _rotated_exif(orientation: int) -> bytes:
    """An EXIF block with only the orientation tag (274), as a phone camera writes it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _files(folder, synthetic_root):
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


def test_answers_equal_elope_predict_model(served_onnx, synthetic_root, tmp_path):
    paths = _files(tmp_path, synthetic_root)
    expected = predict_paths(None, paths, top=3, model=served_onnx)
    served = ServedModel(served_onnx, max_pixels=10**8)
    with TestClient(create_app(served, Limits())) as client:
        for path, want in zip(paths, expected):
            got = client.post("/predict?top=3", files={"image": (path.name, path.read_bytes())}).json()
            result = got["results"][0]
            assert result["size"] == want["size"], path.name
            assert [c["index"] for c in result["classes"]] == [c["index"] for c in want["classes"]], path.name
            np.testing.assert_allclose(
                [c["score"] for c in result["classes"]], [c["score"] for c in want["classes"]], atol=1e-4
            )
            np.testing.assert_allclose(result["box"], want["box"], atol=0.5, err_msg=path.name)
    tops = {tuple(c["index"] for c in w["classes"]) for w in expected}
    assert len(tops) > 1  # the files do not all get the same answer: the comparison can fail


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
