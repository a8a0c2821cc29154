"""Image loading: header-first size cap, JPEG draft decoding, one clear error per unreadable file.

Decoding measurements on this project's CPU (500×400 JPEG, one thread): PIL and
``torchvision.io.decode_jpeg`` decode at the same speed (~3 ms), but PIL's geometric kernels are an
order of magnitude faster than the tensor ones on CPU (rotation: 0.7 ms vs 15 ms at 448²), so images are
decoded with PIL and handed to the v2 transforms as PIL images. What makes decoding fast is JPEG *draft*
mode: libjpeg scales by 1/2, 1/4 or 1/8 inside the DCT while decoding, which is several times faster for
the 1–2 megapixel images of Stanford Cars and FGVC-Aircraft when the network only needs 448².

The pixel count is read from the header and checked *before* any pixel is decoded, which refuses
decompression bombs (a few kilobytes that expand to gigabytes). Only regular files are opened: a FIFO named
``x.jpg`` would block the first read forever.

EXIF orientation (a phone photo stored 128×64 with orientation 6 is shown 64×128 by every viewer) is applied
when decoding: :func:`load_image` returns the image as it is shown, and its size as shown. Boxes of the
datasets refer to the *stored* pixels (their annotators' tools drew on those): :func:`orient_box` moves
them with the image, so a box stays on its object (``FGVCDataset`` does so). :func:`image_dimensions` reads the
stored size, the one such boxes are checked against; ``image_dimensions(path, oriented=True)`` the size as shown.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from elope.outputs import file_kind
from elope.pixels import DEFAULT_MAX_PIXELS, TRANSPOSE, exif_orientation, oriented_size, to_rgb

from .errors import ImageLoadError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Decoded",
    "ImageLoadError",
    "decode_image",
    "exif_orientation",
    "image_dimensions",
    "load_image",
    "load_image_tensor",
    "orient_box",
    "to_rgb",
]


def _open(path: str | os.PathLike, max_pixels: int, data: bytes | None = None) -> Image.Image:
    """Open an image lazily (header only) and refuse it when it has more than ``max_pixels`` pixels;
    ``data``: the file's bytes (a member of a shard), ``path`` then only names it in the messages."""
    path = Path(path)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    if data is None:
        _regular_file(path)
    try:
        with warnings.catch_warnings():
            # Our own cap below replaces PIL's global warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path if data is None else io.BytesIO(data))
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {path}", str(path)) from None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"refused to decode {path}: {error}", str(path)) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"cannot read image {path}: {error}", str(path)) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageLoadError(
            f"refused to decode {path}: {width}x{height} = {width * height} pixels is more than the limit "
            f"of {max_pixels} (a decompression bomb or a wrong file; if the image is genuine, shrink it, or "
            "raise the limit: `elope data check --max-pixels N`, `elope train --set dataset.options.max_pixels=N`, "
            "elope.data.load_image(max_pixels=N))",
            str(path),
        )
    return image


def _regular_file(path: Path) -> None:
    """Refuse what is not a regular file (a FIFO would block ``open`` until a writer comes, a device or a
    folder is no image) before opening it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {path}", str(path)) from None
    except OSError as error:  # a link loop, no permission
        raise ImageLoadError(f"cannot read image {path}: {error.strerror}", str(path)) from None
    if not stat.S_ISREG(info.st_mode):
        what = file_kind(info.st_mode)
        raise ImageLoadError(f"cannot read image {path}: it is {what}, not a regular file", str(path))


def orient_box(
    box: tuple[float, float, float, float], orientation: int, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A box ``x1, y1, x2, y2`` in pixels of the stored image of ``size`` (W, H), in pixels of the image as
    its EXIF ``orientation`` shows it."""
    w, h = size
    corner = {
        2: lambda x, y: (w - x, y),
        3: lambda x, y: (w - x, h - y),
        4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x),
        6: lambda x, y: (h - y, x),
        7: lambda x, y: (h - y, w - x),
        8: lambda x, y: (y, w - x),
    }.get(orientation)
    if corner is None:
        return box
    (ax, ay), (bx, by) = corner(box[0], box[1]), corner(box[2], box[3])
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def image_dimensions(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    oriented: bool = False,
    data: bytes | None = None,
) -> tuple[int, int]:
    """Return ``(width, height)`` of an image from its header, without decoding pixels: as stored, or with
    ``oriented=True`` as its EXIF orientation shows it; ``data``: these bytes instead of ``path``'s."""
    with _open(path, max_pixels, data) as image:
        return oriented_size(image.size, exif_orientation(image)) if oriented else image.size


class Decoded(NamedTuple):
    """An image decoded by :func:`decode_image`."""

    image: Image.Image  # RGB, upright (EXIF orientation applied), maybe draft-reduced
    stored_size: tuple[int, int]  # (W, H) of the stored pixels, full resolution
    orientation: int  # EXIF orientation applied (1: none)

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)`` at full resolution as shown (the stored size, swapped by a 90° orientation)."""
        return oriented_size(self.stored_size, self.orientation)


def decode_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    data: bytes | None = None,
) -> Decoded:
    """Decode an image to RGB with its EXIF orientation applied (see :func:`load_image`); ``data``: decode
    these bytes instead of reading ``path`` (an image inside a shard), which then names it in messages."""
    image = _open(path, max_pixels, data)
    stored_size = image.size
    try:
        with image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            rgb = to_rgb(image)  # decodes every pixel; raises OSError on truncated data
            orientation = exif_orientation(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"cannot decode image {path}: {error}", str(path)) from None
    if orientation != 1:
        rgb = rgb.transpose(TRANSPOSE[orientation])
    return Decoded(rgb, stored_size, orientation)


def load_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an image to an RGB PIL image.

    Args:
        path: the image file.
        max_pixels: refuse images whose header announces more pixels than this (decompression bombs).
        draft_size: when given and the file is a JPEG, let libjpeg decode at the smallest scale 1/2^k whose
            width and height both stay >= ``draft_size`` (no effect on smaller images or other formats).

    Returns:
        ``(image, (width, height))``: the decoded image, upright (its EXIF orientation applied), and its
        full-resolution size as shown. They differ when draft mode reduced the image; scale coordinates by
        ``image.size / size``.

    Raises:
        ImageLoadError: the file is missing, not a regular file, not an image, truncated, or too large; the
            message names it.
    """
    decoded = decode_image(path, max_pixels=max_pixels, draft_size=draft_size)
    return decoded.image, decoded.size


def load_image_tensor(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode an image at full size to a ``uint8`` tensor of shape ``(3, H, W)``."""
    image, _ = load_image(path, max_pixels=max_pixels)
    return F.pil_to_tensor(image)
