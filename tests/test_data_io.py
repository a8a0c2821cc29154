"""Image loading: errors that name the path, truncated files, decompression bombs, draft mode."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fake_datasets import write_image
from PIL import Image

from elope.data import ImageLoadError, image_dimensions, load_image, load_image_tensor


def test_load_and_size(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.jpg", (40, 30), (10, 20, 30))
    image, size = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30) and size == (40, 30)
    assert image_dimensions(path) == (40, 30)
    assert load_image_tensor(path).shape == (3, 30, 40)


def test_draft_mode_reduces_large_jpegs_only(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.jpg", (800, 600), (10, 20, 30))
    image, size = load_image(path, draft_size=150)
    assert size == (800, 600) and image.size == (200, 150)
    png = tmp_path / "big.png"
    Image.open(path).save(png)
    assert load_image(png, draft_size=150)[0].size == (800, 600)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "image file not found"),
        (b"this is not an image", "cannot read image"),
        ("truncated", "cannot decode image .*truncated"),
    ],
)
def test_errors_name_the_path(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path, format="JPEG")
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (5000, 5000)).save(path)  # 25 Mpx in a few kB
    assert path.stat().st_size < 10_000
    with pytest.raises(ImageLoadError, match=re.escape("5000x5000 = 25000000 pixels")):
        load_image(path, max_pixels=10_000_000)
    with pytest.raises(ImageLoadError, match="refused"):
        image_dimensions(path, max_pixels=10_000_000)
