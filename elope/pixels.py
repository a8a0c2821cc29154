"""Decoded pixels as a viewer shows them, with numpy and Pillow only (no torch): the tones of every mode as
8-bit RGB (:func:`to_rgb`; :func:`to_8bit` keeps grey as one band) in bounded memory (wide modes are
scaled in strips, never as a full-size float copy: :func:`decode_bytes`) and the EXIF orientation
(:func:`exif_orientation`, :data:`TRANSPOSE`, :func:`oriented_size`).

One copy for the two readers of images: :mod:`elope.data.io` (training, ``evaluate``, ``predict``) and
:mod:`elope.serve.images` (the server, which must not import torch), so a photo decodes to the same pixels
in both (``tests/test_serve_parity.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "STRIP_PIXELS",
    "TRANSPOSE",
    "decode_bytes",
    "exif_orientation",
    "oriented_size",
    "to_8bit",
    "to_rgb",
]

#: Images with more pixels than this are refused (the largest image of the three paper datasets has
#: well under 20 megapixels). Read by :mod:`elope.data.io` and, without torch, by ``elope data --help``.
DEFAULT_MAX_PIXELS = 100_000_000

# EXIF orientation (tag 274) -> the transpose that shows the stored pixels upright (PIL.ImageOps.exif_transpose)
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 (as stored) when it has none or a value outside 1..8."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: show the pixels as stored
        return 1
    return value if isinstance(value, int) and value in TRANSPOSE else 1


def oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """A stored ``(W, H)`` as the EXIF ``orientation`` shows it (5-8 turn the image a quarter)."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


#: Modes with an alpha channel; their transparent parts are composited over white (what a viewer shows).
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")

#: Pixels converted at a time: wide modes are scaled in strips of rows, so no full-size float copy is made.
STRIP_PIXELS = 1 << 20


def _strips(image: Image.Image) -> Iterator[tuple[int, int]]:
    """``(top, bottom)`` rows of the strips of about :data:`STRIP_PIXELS` pixels that cover ``image``."""
    width, height = image.size
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def _values(image: Image.Image, top: int, bottom: int) -> np.ndarray:
    """The rows ``top:bottom`` of a one-band image as float64, NaN and ±inf as 0 (decodes them)."""
    values = np.asarray(image.crop((0, top, image.width, bottom))).astype(np.float64)
    if not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return values


def _grey(image: Image.Image, scale: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """A one-band image as 8-bit grey (mode L): ``scale`` maps each strip's values to 0..255 (then rounded
    and clipped), one strip at a time; the result takes 1 byte per pixel."""
    out = np.empty((image.height, image.width), np.uint8)
    for top, bottom in _strips(image):
        out[top:bottom] = np.clip(np.rint(scale(_values(image, top, bottom))), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def _wide_grey(image: Image.Image) -> Image.Image:
    """``I`` (32-bit integers) or ``F`` (floats) as 8-bit grey, by the range of all values (see :func:`to_rgb`)."""
    low, high = np.inf, -np.inf
    for top, bottom in _strips(image):  # first pass: the range (nothing kept)
        values = _values(image, top, bottom)
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    if image.width * image.height == 0:
        low = high = 0.0
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        return _grey(image, lambda v: v * 255.0)
    if low >= 0.0 and high <= 255.0:
        return _grey(image, lambda v: v)
    if image.mode == "I" and low >= 0.0 and high <= 65535.0:
        return _grey(image, lambda v: v / 257.0)
    if high > low:
        return _grey(image, lambda v: (v - low) * (255.0 / (high - low)))
    return _grey(image, np.zeros_like)


def _over_white(image: Image.Image) -> Image.Image:
    """An image with transparency composited over white, as RGB, one strip at a time."""
    out = Image.new("RGB", image.size)
    for top, bottom in _strips(image):
        rgba = image.crop((0, top, image.width, bottom)).convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out.paste(Image.alpha_composite(white, rgba).convert("RGB"), (0, top))
    return out


def to_8bit(image: Image.Image) -> Image.Image:
    """Any image Pillow opens as 8 bits per channel with its tones kept: grey modes as ``L``, every other
    as ``RGB`` (decodes every pixel; see :func:`to_rgb` for the rules).

    Memory: the stored pixels (Pillow keeps at most 4 bytes per pixel) and the result (1 byte per pixel
    for grey, 4 for RGB; none for an image that is ``L`` or ``RGB`` already, returned as it is), plus strips
    of :data:`STRIP_PIXELS` pixels: never a full-size float copy. :func:`decode_bytes` states the bound.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        return _grey(image, lambda v: v / 257.0)
    if mode in ("I", "F"):
        return _wide_grey(image)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        return _over_white(image)
    image.load()  # decodes every pixel: a truncated file fails here
    return image if mode in ("L", "RGB") else image.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any image Pillow opens as an 8-bit RGB image, with its tones kept (decodes every pixel).

    ``Image.convert("RGB")`` clips wider modes to 255 (a 16-bit PNG becomes all white), so they are
    scaled instead:

    * ``I;16`` (16-bit grey, e.g. PNG, TIFF): ``value / 257`` (65535 -> 255);
    * ``I`` (32-bit integers): taken as 8-bit when every value lies in 0..255, as 16-bit when in 0..65535,
      else stretched from its minimum (0) to its maximum (255);
    * ``F`` (floats): ``× 255`` when every value lies in [0, 1], as is when in [0, 255], else stretched
      (NaN and ±inf count as 0);
    * alpha (``LA``, ``PA``, ``RGBA``, ``P``/``L``/``RGB`` with a transparent colour): composited over white;
    * every other mode (``RGB``, ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ...): ``convert("RGB")``.

    An ``RGB`` image is returned as it is (decoded, not copied). The 8-bit step is :func:`to_8bit`.
    """
    eight = to_8bit(image)
    return eight.convert("RGB") if eight.mode == "L" else eight


def decode_bytes(image: Image.Image, full_size: tuple[int, int] | None = None) -> int:
    """The most bytes that decoding ``image`` (opened, not yet loaded; after any ``draft``) to 8 bits takes
    with :func:`to_8bit`, upright, known from its header before a pixel is decoded.

    The stored pixels (Pillow keeps 1 byte per pixel for ``1``, ``L``, ``P``, 2 for 16-bit grey, 4 for
    every other mode), one 8-bit copy (1 byte per pixel for grey, 4 for RGB: :func:`to_8bit`'s result or
    the EXIF transpose of an image it returned as it was), what the decoder keeps besides (by format,
    measured: libwebp's frame and its two canvases, 16 bytes per pixel; libtiff's strip buffer, up to the
    stored pixels again; a progressive JPEG's coefficients, 2 bytes per sample of every band at the full
    size ``full_size``, the size before ``draft``), and 64 MiB for one strip's working copies.
    """
    mode, (width, height) = image.mode, image.size
    pixels = width * height
    full = full_size[0] * full_size[1] if full_size else pixels
    grey = mode in ("L", "I", "F") or mode.startswith("I;16")
    stored = 2 if mode.startswith("I;16") else 1 if mode in ("1", "L", "P") else 4
    total = (stored + (1 if grey else 4)) * pixels
    if image.format == "WEBP":
        total += 16 * full
    elif image.format == "TIFF":
        total += stored * full
    elif image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        total += 2 * len(image.getbands()) * full
    return total + 64 * 2**20
