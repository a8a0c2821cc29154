"""Decoded pixels as a viewer shows them, with numpy and Pillow only (no torch): the tones of every mode as
8-bit RGB (:func:`to_rgb`) and the EXIF orientation (:func:`exif_orientation`, :data:`TRANSPOSE`,
:func:`oriented_size`).

One copy for the two readers of images: :mod:`elope.data.io` (training, ``evaluate``, ``predict``) and
:mod:`elope.serve.images` (the server, which must not import torch), so a photo decodes to the same pixels
in both (``tests/test_serve_parity.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["DEFAULT_MAX_PIXELS", "TRANSPOSE", "exif_orientation", "oriented_size", "to_rgb"]

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


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    """8-bit grey values (any shape (H, W) array already in [0, 255]) as an RGB image."""
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any image Pillow opens as an 8-bit RGB image, with its tones kept (decodes every pixel).

    ``Image.convert("RGB")`` clips wider modes to 255 (a 16-bit PNG becomes all white), so they are
    scaled instead:

    * ``I;16`` (16-bit grey, e.g. PNG, TIFF): ``value / 257`` (65535 -> 255);
    * ``I`` (32-bit integers): taken as 8-bit when every value lies in 0..255, as 16-bit when in 0..65535,
      else stretched from its minimum (0) to its maximum (255);
    * ``F`` (floats): ``× 255`` when every value lies in [0, 1], as is when in [0, 255], else stretched;
    * alpha (``LA``, ``PA``, ``RGBA``, ``P``/``L``/``RGB`` with a transparent colour): composited over white;
    * every other mode (``RGB``, ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ...): ``convert("RGB")``.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        return _grey_to_rgb(np.asarray(image).astype(np.float64) / 257.0)
    if mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        if not np.isfinite(values).all():
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if mode == "F" and low >= 0.0 and high <= 1.0:
            values = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            pass
        elif mode == "I" and low >= 0.0 and high <= 65535.0:
            values = values / 257.0
        else:
            values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return _grey_to_rgb(values)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
