"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=schemathesis_images``): what an image upload is, which a JSON
schema cannot say (``format: binary`` is any bytes). Every ``image/*`` media type of the OpenAPI document
(raw bodies, multipart parts) draws small real images of every format and mode the server decodes, so a
schema-valid request carries an image and the fuzzer can hold ``elope serve`` to "valid data accepted"."""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image

FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}
MODES = {
    "PNG": ("RGB", "RGBA", "L", "LA", "P", "I;16"),
    "JPEG": ("RGB", "L", "CMYK"),
    "GIF": ("P", "L"),
    "WEBP": ("RGB", "RGBA"),
    "BMP": ("RGB", "L", "P"),
    "TIFF": ("RGB", "L", "I;16", "F", "I", "CMYK"),
}


def _image(fmt: str, mode: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    elif mode in ("F", "I"):
        image = Image.fromarray(np.asarray(rgb.convert("L"), np.float32 if mode == "F" else np.int32), mode)
    else:
        image = rgb.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _strategy(fmt: str) -> st.SearchStrategy[bytes]:
    size = st.integers(1, 48)
    return st.builds(_image, st.just(fmt), st.sampled_from(MODES[fmt]), size, size, st.integers(0, 2**16))


for name, fmt in FORMATS.items():
    schemathesis.openapi.media_type(f"image/{name}", _strategy(fmt))
schemathesis.openapi.media_type("application/octet-stream", st.one_of(*map(_strategy, FORMATS.values())))
