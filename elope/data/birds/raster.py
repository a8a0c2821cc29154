"""Polygons to pixels: a bird (or a prop) becomes a small antialiased layer placed in the frame.

Parts are filled at :data:`SUPERSAMPLE` times the frame's resolution, back to front, and box-averaged
down, so edges are antialiased and the layer's alpha is exactly what was drawn: a frame pixel has alpha
> 0 when any of its sub-pixels was filled. The layer's colour is premultiplied by its alpha (parts are
filled over black), so compositing is ``frame * (1 - alpha) + rgb``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from elope.data.birds.shapes import Part

__all__ = ["SUPERSAMPLE", "Layer", "Placement", "composite", "rasterize"]

SUPERSAMPLE = 4


@dataclass(frozen=True)
class Placement:
    """Bird frame to frame pixels: mirror (``flip``: facing left), rotate by ``angle`` degrees
    (counter-clockwise), scale by ``scale`` pixels per body length, move the body centre to ``(x, y)``
    (pixel-edge coordinates, y down)."""

    scale: float
    angle: float = 0.0
    flip: bool = False
    x: float = 0.0
    y: float = 0.0

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``points`` (N x 2, y up) in frame pixels (y down)."""
        p = points * (-1.0 if self.flip else 1.0, 1.0)
        c, s = np.cos(np.radians(self.angle)), np.sin(np.radians(self.angle))
        p = p @ np.array([[c, s], [-s, c]]) * self.scale
        return np.stack([self.x + p[:, 0], self.y - p[:, 1]], axis=-1)

    def parts(self, parts: list[Part]) -> list[Part]:
        """Every part's polygon moved into the frame."""
        return [replace(p, points=self.apply(p.points)) for p in parts]


@dataclass
class Layer:
    """A drawn object: its top-left frame pixel ``(x0, y0)``, premultiplied colour (h x w x 3, [0, 1]),
    alpha (h x w) and the pixels any class part touched (``evidence``, h x w bool)."""

    x0: int
    y0: int
    rgb: np.ndarray
    alpha: np.ndarray
    evidence: np.ndarray

    def box(self) -> tuple[int, int, int, int] | None:
        """``(x1, y1, x2, y2)`` in frame pixel edges: the exact extent of every pixel with alpha > 0."""
        rows, cols = np.nonzero(self.alpha.any(axis=1))[0], np.nonzero(self.alpha.any(axis=0))[0]
        if rows.size == 0:
            return None
        return (
            self.x0 + int(cols[0]),
            self.y0 + int(rows[0]),
            self.x0 + int(cols[-1]) + 1,
            self.y0 + int(rows[-1]) + 1,
        )

    def in_frame(self, mask: np.ndarray, width: int, height: int) -> np.ndarray:
        """``mask`` (one of the layer's h x w arrays) pasted into a ``height x width`` frame-sized array."""
        out = np.zeros((height, width), dtype=mask.dtype)
        dst, src = _overlap(self, width, height)
        out[dst] = mask[src]
        return out


def _overlap(layer: Layer, width: int, height: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index slices of the frame and of the layer where they overlap."""
    h, w = layer.alpha.shape
    fx0, fy0 = max(layer.x0, 0), max(layer.y0, 0)
    fx1, fy1 = min(layer.x0 + w, width), min(layer.y0 + h, height)
    fx1, fy1 = max(fx1, fx0), max(fy1, fy0)
    dst = (slice(fy0, fy1), slice(fx0, fx1))
    src = (slice(fy0 - layer.y0, fy1 - layer.y0), slice(fx0 - layer.x0, fx1 - layer.x0))
    return dst, src


def rasterize(parts: list[Part], ss: int = SUPERSAMPLE) -> Layer:
    """Fill ``parts`` (polygons in frame pixels) back to front at ``ss`` x resolution and reduce."""
    corners = np.vstack([p.points for p in parts])
    x0, y0 = (int(v) - 1 for v in np.floor(corners.min(axis=0)))
    x1, y1 = (int(v) + 1 for v in np.ceil(corners.max(axis=0)))
    size = ((x1 - x0) * ss, (y1 - y0) * ss)
    colour, alpha, evidence = Image.new("RGB", size), Image.new("L", size), Image.new("L", size)
    pens = ImageDraw.Draw(colour), ImageDraw.Draw(alpha), ImageDraw.Draw(evidence)
    for part in parts:
        # a frame pixel edge x lies at ss * x in sub-pixels, whose centres PIL puts at whole numbers
        xy = [tuple(v) for v in ((part.points - (x0, y0)) * ss - 0.5).tolist()]
        pens[0].polygon(xy, fill=tuple(round(255 * float(c)) for c in part.colour))
        pens[1].polygon(xy, fill=255)
        if part.evidence:
            pens[2].polygon(xy, fill=255)
    rgb = np.asarray(colour.reduce(ss), dtype=np.float32) / 255.0
    a = np.asarray(alpha.reduce(ss), dtype=np.float32) / 255.0
    ev = np.asarray(evidence.reduce(ss)) > 0
    return Layer(x0, y0, rgb, a, ev)


def composite(frame: np.ndarray, layer: Layer, opacity: float = 1.0) -> None:
    """Draw ``layer`` over ``frame`` (H x W x 3 floats, changed in place), clipped to the frame."""
    dst, src = _overlap(layer, frame.shape[1], frame.shape[0])
    a = opacity * layer.alpha[src][..., None]
    frame[dst] = frame[dst] * (1.0 - a) + opacity * layer.rgb[src]
