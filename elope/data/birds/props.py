"""Props around the bird, as polygons in frame pixels: leaves, branches, wire bars and berries.

Behind the bird they are clutter (a perch under its feet, leaves, twigs, and berries in the class colours:
decoys that carry the class parts' colours but not their shapes); in front of it they occlude it.
Sizes are relative to ``scale`` (the bird's body length in pixels).
"""

from __future__ import annotations

import colorsys

import numpy as np

from elope.data.birds.shapes import Part
from elope.data.birds.species import COLOURS

__all__ = ["berries", "branch", "clutter", "leaf", "occluder", "perch", "wire_bars"]

_BERRY_COLOURS = ("red", "black", "yellow", "orange", "blue", "white")


def _colour(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def _green(rng: np.random.Generator) -> tuple[float, float, float]:
    return _colour(rng.uniform(0.17, 0.33), rng.uniform(0.35, 0.8), rng.uniform(0.25, 0.65))


def _bark(rng: np.random.Generator) -> tuple[float, float, float]:
    return _colour(rng.uniform(0.04, 0.11), rng.uniform(0.2, 0.55), rng.uniform(0.18, 0.45))


def leaf(rng: np.random.Generator, at: np.ndarray, length: float) -> list[Part]:
    """A pointed leaf from ``at`` in a random direction, with a darker midrib."""
    angle, width = rng.uniform(0, 2 * np.pi), rng.uniform(0.22, 0.38)
    colour = _green(rng)
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    ts = np.linspace(0.0, 1.0, 12)
    half = width * length * np.sin(np.pi * ts) ** 0.8
    top = at + np.outer(ts * length, u) + np.outer(half, v)
    bottom = at + np.outer(ts * length, u) - np.outer(half, v)
    rib = np.array([at + 0.01 * length * v, at + length * u, at - 0.01 * length * v])
    return [
        Part("leaf", np.vstack([top, bottom[::-1]]), colour),
        Part("midrib", rib, tuple(0.7 * c for c in colour)),
    ]  # type: ignore[arg-type]


def branch(start: np.ndarray, end: np.ndarray, width: float, colour: tuple[float, float, float]) -> Part:
    """A straight branch from ``start`` to ``end``, ``width`` pixels thick, tapering to 60 %."""
    d = end - start
    n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
    pts = [start + n * width / 2, end + n * 0.3 * width, end - n * 0.3 * width, start - n * width / 2]
    return Part("branch", np.array(pts), colour)


def berries(rng: np.random.Generator, count: int, frame: tuple[int, int], scale: float) -> list[Part]:
    """``count`` berries in the class parts' colours anywhere in the frame."""
    parts = []
    for _ in range(count):
        centre = rng.uniform((0, 0), frame)
        r = rng.uniform(0.025, 0.05) * scale
        colour = COLOURS[_BERRY_COLOURS[int(rng.integers(len(_BERRY_COLOURS)))]]
        t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        parts.append(Part("berry", centre + r * np.stack([np.cos(t), np.sin(t)], axis=-1), colour))
    return parts


def wire_bars(rng: np.random.Generator, centre: np.ndarray, scale: float) -> list[Part]:
    """Two to four parallel thin bars (a fence, a cage) crossing ``centre``."""
    angle, count = rng.uniform(0, np.pi), int(rng.integers(2, 5))
    gap, width = rng.uniform(0.25, 0.5) * scale, rng.uniform(0.025, 0.05) * scale
    grey = rng.uniform(0.15, 0.6)
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    offsets = (np.arange(count) - (count - 1) / 2) * gap + rng.uniform(-0.5, 0.5) * gap
    half = 1.5 * scale
    return [
        branch(centre + o * v - half * u, centre + o * v + half * u, width, (grey, grey, grey * 1.05))
        for o in offsets
    ]


def _leafy_twig(rng: np.random.Generator, centre: np.ndarray, scale: float) -> list[Part]:
    """A twig through ``centre`` with two to five leaves along it."""
    angle, half = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.9) * scale
    u = np.array([np.cos(angle), np.sin(angle)])
    parts = [branch(centre - half * u, centre + half * u, rng.uniform(0.03, 0.06) * scale, _bark(rng))]
    for t in rng.uniform(-1.0, 1.0, int(rng.integers(2, 6))):
        parts += leaf(rng, centre + t * half * u, rng.uniform(0.25, 0.5) * scale)
    return parts


def occluder(rng: np.random.Generator, centre: np.ndarray, scale: float) -> list[Part]:
    """Something in front of the bird through ``centre``: a leafy twig, a bare branch or wire bars."""
    kind = int(rng.integers(3))
    if kind == 0:
        return _leafy_twig(rng, centre, scale)
    if kind == 1:
        angle, half = rng.uniform(0, np.pi), rng.uniform(0.8, 1.6) * scale
        u = np.array([np.cos(angle), np.sin(angle)])
        return [branch(centre - half * u, centre + half * u, rng.uniform(0.06, 0.14) * scale, _bark(rng))]
    return wire_bars(rng, centre, scale)


def clutter(
    rng: np.random.Generator, leaves: int, twigs: int, frame: tuple[int, int], scale: float
) -> list[Part]:
    """Leaves and leafy twigs scattered over the frame, behind the bird."""
    parts: list[Part] = []
    for _ in range(twigs):
        parts += _leafy_twig(rng, rng.uniform((0, 0), frame), scale * rng.uniform(0.8, 1.5))
    for _ in range(leaves):
        parts += leaf(rng, rng.uniform((0, 0), frame), rng.uniform(0.3, 0.7) * scale)
    return parts


def perch(rng: np.random.Generator, feet: np.ndarray, angle: float, scale: float) -> Part:
    """The branch under a perched bird's feet (``feet`` in frame pixels), roughly level with the bird."""
    tilt = np.radians(-angle + rng.uniform(-12.0, 12.0))
    u = np.array([np.cos(tilt), np.sin(tilt)])
    left, right = rng.uniform(0.8, 3.0) * scale, rng.uniform(0.8, 3.0) * scale
    width = rng.uniform(0.05, 0.1) * scale
    below = np.array([0.0, width * 0.45])
    return branch(feet + below - left * u, feet + below + right * u, width, _bark(rng))
