"""Photographic backgrounds for the bird family: random crops of photographs shipped with scikit-image.

scikit-image (BSD-3-Clause) carries a few sample images inside its wheel (``skimage/data``; these are not
the ones it downloads on demand). The ones used here are free of copyright restrictions, as their
docstrings in ``skimage.data`` say: ``astronaut.png`` (NASA, public domain), ``chelsea.png`` (Stefan van
der Walt, CC0), ``coffee.png`` (Rachel Michetti, CC0), ``rocket.jpg`` (SpaceX, public domain) and the CC0
textures ``grass.png``, ``gravel.png`` and ``brick.png`` (grey, tinted here). The files are read straight
from the installed package (scikit-image itself is never imported); install it with
``pip install 'elope[birds]'``.

A background is a zoomed, flipped crop of one photograph, often blended with a crop of a second one
across a soft random edge (foliage over ground, a wall beside a sky), blurred as if out of focus, with its
colour balance, saturation and brightness shifted.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from elope.data.errors import DataError

__all__ = ["PHOTOS", "background", "photo_digests", "photo_folder"]

#: Photographs used (file in ``skimage/data`` -> tint for a grey texture, None for a colour photograph).
PHOTOS: dict[str, tuple[float, float, float] | None] = {
    "astronaut.png": None,
    "chelsea.png": None,
    "coffee.png": None,
    "rocket.jpg": None,
    "grass.png": (0.55, 0.75, 0.35),
    "gravel.png": (0.80, 0.70, 0.55),
    "brick.png": (0.85, 0.55, 0.45),
}
_INSTALL = "pip install 'elope[birds]' (or pip install 'scikit-image>=0.19')"


def photo_folder() -> Path:
    """``skimage/data`` of the installed scikit-image; a :class:`DataError` saying how to install it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the bird family's backgrounds are photographs shipped with scikit-image, which is not installed: {_INSTALL}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in PHOTOS if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{folder} lacks the photograph(s) {', '.join(missing)}: reinstall scikit-image ({_INSTALL})"
        )
    return folder


@lru_cache(maxsize=len(PHOTOS))
def _photo(name: str) -> Image.Image:
    """One photograph as RGB (a grey texture tinted), decoded once per process."""
    with Image.open(photo_folder() / name) as image:
        image.load()
        tint = PHOTOS[name]
        if tint is None:
            return image.convert("RGB")
        grey = np.asarray(image.convert("L"), dtype=np.float32)[..., None]
        return Image.fromarray(np.clip(grey * np.array(tint) * 1.15, 0, 255).astype(np.uint8))


def photo_digests() -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each photograph used: the metadata records what was drawn on."""
    folder = photo_folder()
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()[:16] for name in PHOTOS}


def _crop(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random photograph, zoomed 1-3x, cropped to the frame's aspect, maybe mirrored (H x W x 3, [0, 1])."""
    names = list(PHOTOS)
    photo = _photo(names[int(rng.integers(len(names)))])
    zoom, fx, fy, mirror = rng.uniform(1.0, 3.0), rng.random(), rng.random(), rng.random() < 0.5
    pw, ph = photo.size
    scale = min(pw / width, ph / height) / zoom
    cw, ch = width * scale, height * scale
    left, top = fx * (pw - cw), fy * (ph - ch)
    crop = photo.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
    if mirror:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32) / 255.0


def _blend_mask(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A soft edge across the frame at a random angle and offset (H x W x 1 in [0, 1])."""
    angle, offset, soft = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3), rng.uniform(0.03, 0.25)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    side = max(width, height)
    d = ((xs - width / 2) * np.cos(angle) + (ys - height / 2) * np.sin(angle)) / side - offset
    return np.clip(0.5 + d / soft, 0.0, 1.0)[..., None]


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A ``height x width x 3`` background in [0, 1] (see the module's docstring)."""
    image = _crop(rng, width, height)
    second, mask = _crop(rng, width, height), _blend_mask(rng, width, height)
    if rng.random() < 0.6:
        image = image * (1.0 - mask) + second * mask
    blur = rng.uniform(0.0, 3.0) * max(width, height) / 448
    pil = Image.fromarray((image * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    image = np.asarray(pil, dtype=np.float32) / 255.0
    gains, saturation, brightness = rng.uniform(0.85, 1.15, 3), rng.uniform(0.5, 1.1), rng.uniform(0.7, 1.05)
    grey = image.mean(axis=2, keepdims=True)
    image = (grey + saturation * (image - grey)) * gains * brightness
    return np.clip(image, 0.0, 1.0).astype(np.float32)
