"""The drawing of the import graph in docs/architecture.md is made from the code by tests/draw_imports.py."""

from __future__ import annotations

from pathlib import Path

from draw_imports import draw
from PIL import Image


def test_the_drawing_is_measured_from_the_code(tmp_path: Path) -> None:
    found = draw(tmp_path / "imports.png")
    with Image.open(tmp_path / "imports.png") as image:
        assert image.size[0] > 800 and image.size[1] > 800
    assert found["upward"] == [] and found["cycle"] is None
    assert sum(found["modules"].values()) > 100 and len(found["pairs"]) > 10
    assert all(upper > lower for upper, lower in found["pairs"])  # every arrow runs down
