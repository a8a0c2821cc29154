"""Uploaded bytes → the normalised input of the exported graph, exactly as ``elope predict --model`` reads a
file, with numpy and Pillow only (no torch: the server never imports it).

``elope predict`` (:mod:`elope.tasks.predict`) decodes with :func:`elope.data.io.load_image` — the pixel
count read from the header and refused above a limit before any pixel is decoded, JPEG *draft* decoding to
the smallest 1/2^k scale that still covers the input side N, every mode to 8-bit RGB with
:func:`elope.pixels.to_rgb` (16-bit scaled, alpha over white, CMYK converted), EXIF orientation applied — then
resizes to N×N with Pillow's bilinear filter (``torchvision.transforms.v2.Resize`` on a PIL image calls
``Image.resize(BILINEAR)``, which is antialiased) and normalises ``(x / 255 - mean) / std``. The same steps
are written here, with the tones and the orientation from the same torch-free module as the package's
(:mod:`elope.pixels`); ``tests/test_serve_parity.py`` checks the answers equal ``elope predict --model``'s.
A grey image (8-bit, 16-bit, integer or float) stays one band until it is N×N (Pillow resizes each band
alike, so the pixels are the same) and the stored pixels are freed once converted: decoding one image
takes at most :func:`elope.pixels.decode_bytes` (its stored pixels and one 8-bit copy, about 3 bytes per
pixel for a 16-bit PNG, 5 for an integer or float TIFF, 8 at most), not a full-size float64 copy.

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

from elope.pixels import TRANSPOSE, decode_bytes, exif_orientation, oriented_size, to_8bit, to_rgb

__all__ = [
    "DEFAULT_MAX_DECODE_BYTES",
    "FORMATS",
    "BadUpload",
    "Decoded",
    "Preprocess",
    "decode_image",
    "to_rgb",
]


class BadUpload(ValueError):
    """A request the server refuses: ``status`` (a 4xx code) and a one-line ``message``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Decoded:
    """One uploaded image: ``array`` the normalised (3, N, N) float32 input, ``size`` its (W, H) as shown
    (EXIF orientation applied)."""

    array: np.ndarray
    size: tuple[int, int]


# ------------------------------------------------------------------------------------------- decoding
#: The formats the server decodes (Pillow's names; a camera's multi-picture JPEG opens as JPEG, then says
#: MPO): each one's decoding memory is known from its header (:func:`elope.pixels.decode_bytes`, measured
#: in tests/test_serve_memory.py).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
DEFAULT_MAX_DECODE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Preprocess:
    """What turns a photo into the graph's input: side ``size``, ``mean`` / ``std``, the pixel limit and
    the most bytes decoding one image may take (:func:`elope.pixels.decode_bytes`)."""

    size: int
    mean: Sequence[float]
    std: Sequence[float]
    max_pixels: int
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES

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
            image = Image.open(io.BytesIO(data), formats=FORMATS)
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


def _check_decode_memory(image: Image.Image, stored: tuple[int, int], name: str, limit: int) -> None:
    """Refuse (413) an image whose decoding would take more than ``limit`` bytes, before decoding it."""
    need = decode_bytes(image, stored)
    if need > limit:
        image.close()
        raise BadUpload(
            f"image {name!r} ({image.format} {image.mode}, {stored[0]}x{stored[1]}) would take "
            f"{need / 2**20:.0f} MiB to decode, over the limit of {limit / 2**20:.0f} MiB (--max-decode-mb; "
            "send it smaller, or as a JPEG or PNG)",
            413,
        )


def decode_image(data: bytes, prep: Preprocess, name: str = "image") -> Decoded:
    """Decode, resize and normalise one upload as ``elope predict --model`` does (see the module's notes).

    Raises:
        BadUpload: empty (400), not an image (415), over the pixel limit (413), truncated or corrupt (400).
    """
    image = _open(data, name, prep.max_pixels)
    stored = image.size
    try:
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (prep.size, prep.size))
        _check_decode_memory(image, stored, name, prep.max_decode_bytes)
        eight = to_8bit(image)  # decodes every pixel, in bounded memory: a truncated file fails here
        orientation = exif_orientation(image)
    except BadUpload:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        image.close()
        raise BadUpload(f"image {name!r} cannot be decoded (truncated or corrupt?): {error}", 400) from None
    if eight is not image:
        image.close()  # the stored pixels go before the next full-size copy
    if orientation != 1:  # upright, as elope.data.io.decode_image shows it
        eight = eight.transpose(TRANSPOSE[orientation])
    shown = oriented_size(stored, orientation)
    if eight.size != (prep.size, prep.size):
        eight = eight.resize((prep.size, prep.size), Image.BILINEAR)
    rgb = eight.convert("RGB") if eight.mode == "L" else eight  # grey: resized first, the same pixels
    scale, bias = prep.scale_and_bias()
    pixels = np.asarray(rgb, np.float32).transpose(2, 0, 1)
    return Decoded(np.ascontiguousarray(pixels * scale + bias), (int(shown[0]), int(shown[1])))
