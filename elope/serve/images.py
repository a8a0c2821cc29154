"""Uploaded bytes → the normalised input of the exported graph, exactly as ``elope predict --model`` reads a
file, with numpy and Pillow only (no torch: the server never imports it).

``elope predict`` (:mod:`elope.tasks.predict`) decodes with :func:`elope.data.io.load_image` — the pixel
count read from the header and refused above a limit before any pixel is decoded, JPEG *draft* decoding to
the smallest 1/2^k scale that still covers the input side N, every mode to 8-bit RGB with
:func:`elope.data.io.to_rgb` (16-bit scaled, alpha over white, CMYK converted), EXIF orientation applied — then
resizes to N×N with Pillow's bilinear filter (``torchvision.transforms.v2.Resize`` on a PIL image calls
``Image.resize(BILINEAR)``, which is antialiased) and normalises ``(x / 255 - mean) / std``. The same steps
are written here; ``tests/test_serve_parity.py`` checks the answers equal ``elope predict --model``'s and
that :func:`to_rgb` equals the package's on every mode.

Every failure is a :class:`BadUpload`: an HTTP status (4xx) and a one-line message naming the image and,
for a limit, the limit.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["BadUpload", "Decoded", "Preprocess", "decode_image", "to_rgb"]


class BadUpload(ValueError):
    """A request the server refuses: ``status`` (a 4xx code) and a one-line ``message``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Decoded:
    """One uploaded image: ``array`` the normalised (3, N, N) float32 input, ``size`` its (W, H) as shown (EXIF orientation applied)."""

    array: np.ndarray
    size: tuple[int, int]


# ------------------------------------------------------------------ the package's to_rgb, without torch
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L").convert("RGB")


def _wide_grey(image: Image.Image) -> Image.Image:
    """``I`` / ``F`` modes: 8-bit as is, 16-bit / 257, [0, 1] floats × 255, anything else stretched."""
    values = np.asarray(image).astype(np.float64)
    if not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        values = values * 255.0
    elif low >= 0.0 and high <= 255.0:
        pass
    elif image.mode == "I" and low >= 0.0 and high <= 65535.0:
        values = values / 257.0
    else:
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return _grey_to_rgb(values)


# EXIF orientation (tag 274) -> the transpose that shows the stored pixels upright: elope.data.io's table
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(image: Image.Image) -> int:
    """:func:`elope.data.io.exif_orientation`: 1 when the image has none, a damaged one or one outside 1..8."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: show the pixels as stored
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Any image Pillow opens as 8-bit RGB with its tones kept: :func:`elope.data.io.to_rgb`, step for step."""
    mode = image.mode
    if mode.startswith("I;16"):
        return _grey_to_rgb(np.asarray(image).astype(np.float64) / 257.0)
    if mode in ("I", "F"):
        return _wide_grey(image)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


# ------------------------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class Preprocess:
    """What turns a photo into the graph's input: side ``size``, ``mean`` / ``std``, the pixel limit."""

    size: int
    mean: Sequence[float]
    std: Sequence[float]
    max_pixels: int

    def scale_and_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """``x * scale + bias`` = ``(x / 255 - mean) / std`` per channel, in float32 as the package does."""
        std = np.asarray(self.std, np.float32)
        scale = np.float32(1.0 / 255.0) / std
        bias = (np.float32(0.0) - np.asarray(self.mean, np.float32)) / std
        return scale.reshape(3, 1, 1), bias.reshape(3, 1, 1)


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open ``data`` lazily (header only) and refuse it when empty, unreadable or over ``max_pixels``."""
    if not data:
        raise BadUpload(f"image {name!r} is empty (0 bytes): send the file's bytes", 400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadUpload(
            f"image {name!r} ({len(data)} bytes) is not an image Pillow can read: send a JPEG, PNG, WebP, "
            "BMP, GIF or TIFF file",
            415,
        ) from None
    except Image.DecompressionBombError as error:
        raise BadUpload(
            f"image {name!r} refused: {error} (this server's limit: {max_pixels}, --max-pixels)", 413
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise BadUpload(f"image {name!r} cannot be read: {error}", 400) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise BadUpload(
            f"image {name!r} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            "(--max-pixels; a decompression bomb or a photo to shrink first)",
            413,
        )
    if width < 1 or height < 1:
        raise BadUpload(f"image {name!r} has no pixels ({width}x{height})", 400)
    return image


def decode_image(data: bytes, prep: Preprocess, name: str = "image") -> Decoded:
    """Decode, resize and normalise one upload as ``elope predict --model`` does (see the module's notes).

    Raises:
        BadUpload: empty (400), not an image (415), over the pixel limit (413), truncated or corrupt (400).
    """
    image = _open(data, name, prep.max_pixels)
    shown = image.size
    try:
        with image:
            if image.format == "JPEG":
                image.draft("RGB", (prep.size, prep.size))
            rgb = to_rgb(image)  # decodes every pixel: a truncated file fails here
            orientation = _exif_orientation(image)
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise BadUpload(f"image {name!r} cannot be decoded (truncated or corrupt?): {error}", 400) from None
    if orientation != 1:  # upright, as elope.data.io.decode_image shows it; its size as shown
        rgb = rgb.transpose(_TRANSPOSE[orientation])
        shown = (shown[1], shown[0]) if orientation in (5, 6, 7, 8) else shown
    if rgb.size != (prep.size, prep.size):
        rgb = rgb.resize((prep.size, prep.size), Image.BILINEAR)
    scale, bias = prep.scale_and_bias()
    pixels = np.asarray(rgb, np.float32).transpose(2, 0, 1)
    return Decoded(np.ascontiguousarray(pixels * scale + bias), (int(shown[0]), int(shown[1])))
