"""What varies within a class: pose, plumage, size and place of the bird in the frame.

Every draw here is made from the image's generator before the species is known, so two classes rendered
from the same draws differ only in their class parts (tests/test_data_birds.py checks this pixel by pixel).
"""

from __future__ import annotations

import colorsys
from itertools import product

import numpy as np

from elope.data.birds.raster import Placement
from elope.data.birds.shapes import Plumage, Pose, bird_parts
from elope.data.birds.species import BILLS, CRESTS, LOOKALIKE, Species

__all__ = ["envelope", "sample_placement", "sample_plumage", "sample_pose"]

_BLACK = Plumage(*([(0.0, 0.0, 0.0)] * 6))  # type: ignore[arg-type]  # only outlines are measured

# (tilt, head, tail) ranges of each pose, degrees
_POSE_RANGES = {
    "perched": ((20.0, 40.0), (-12.0, 12.0), (5.0, 25.0)),
    "upright": ((50.0, 70.0), (-8.0, 15.0), (-5.0, 8.0)),
    "foraging": ((-18.0, -4.0), (-45.0, -20.0), (-25.0, -8.0)),
    "flying": ((-10.0, 10.0), (-8.0, 8.0), (-6.0, 6.0)),
}


def sample_pose(rng: np.random.Generator, poses: tuple[str, ...]) -> Pose:
    """A pose of one of ``poses`` with its angles and proportions drawn (always the same number of draws)."""
    kind = poses[int(rng.integers(len(poses)))]
    tilt, head, tail = (rng.uniform(*r) for r in _POSE_RANGES[kind])
    wing = rng.uniform(95.0, 135.0)
    body, head_size, tail_length = rng.uniform(0.88, 1.15), rng.uniform(0.9, 1.12), rng.uniform(0.8, 1.2)
    crest, bill = rng.uniform(0.85, 1.15), rng.uniform(0.88, 1.12)
    return Pose(kind, tilt, head, tail, wing, body, head_size, tail_length, crest, bill)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))


def sample_plumage(rng: np.random.Generator) -> Plumage:
    """Earthy body colours (browns, olives, greys, slate blue-greys), a paler belly, a darker wing and
    tail; none of them is a class colour's saturation."""
    hue = rng.choice([rng.uniform(0.03, 0.17), rng.uniform(0.52, 0.64)], p=[0.75, 0.25])
    sat, val = rng.uniform(0.08, 0.5), rng.uniform(0.28, 0.68)
    belly_mix, belly_hue = rng.uniform(0.35, 0.75), rng.uniform(0.05, 0.14)
    wing_dark, tail_dark, legs_v = rng.uniform(0.7, 0.95), rng.uniform(0.55, 0.85), rng.uniform(0.2, 0.55)
    back = _hsv(hue, sat, val)
    buff = _hsv(belly_hue, 0.25, 0.95)
    belly = tuple((1 - belly_mix) * b + belly_mix * f for b, f in zip(back, buff))
    return Plumage(
        back=back,
        belly=belly,  # type: ignore[arg-type]
        wing=_hsv(hue, sat * 1.1, val * wing_dark),
        primaries=_hsv(hue, sat, val * wing_dark * 0.55),
        tail=_hsv(hue, sat, val * tail_dark),
        legs=_hsv(0.02, 0.2, legs_v),
    )


def envelope(pose: Pose) -> np.ndarray:
    """Every vertex any species could have in this pose (all crest and bill shapes, with wing bars and a
    tail tip): the bird's extent before its class is known, so that size and place depend on no class."""
    crests = {c for c, _ in CRESTS}
    bills = {b for b, _ in BILLS}
    points = []
    for crest, bill in product(sorted(crests), sorted(bills)):
        species = Species(crest, "red", bill, "black", "white", 2, "white", "white")
        points += [p.points for p in bird_parts(pose, species, _BLACK)]
    return np.vstack(points)


def sample_placement(
    rng: np.random.Generator,
    pose: Pose,
    size: tuple[float, float],
    frame: tuple[int, int],
    *,
    rotation: float,
    centred: bool = False,
) -> tuple[Placement, tuple[float, float, float, float]]:
    """Scale, rotation, mirror and position: the plain bird's longer side (its box without crest, with a
    medium bill: :data:`LOOKALIKE`) is ``size`` (a fraction drawn from the range) of the frame's longer
    side, and the envelope (any species) lies inside the frame (near its centre when ``centred``).
    Returns the placement and the envelope's box in frame pixels."""
    width, height = frame
    fraction, angle, flip = rng.uniform(*size), rng.uniform(-rotation, rotation), bool(rng.random() < 0.5)
    fx, fy = rng.random(), rng.random()
    unit = Placement(1.0, angle, flip)
    plain = unit.apply(np.vstack([p.points for p in bird_parts(pose, LOOKALIKE, _BLACK)]))
    outline = unit.apply(envelope(pose))
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    scale = min(
        fraction * max(width, height) / float((plain.max(axis=0) - plain.min(axis=0)).max()),
        min((width - 4.0) / (hi - lo)[0], (height - 4.0) / (hi - lo)[1]),  # every species fits the frame
    )
    lo, hi = lo * scale, hi * scale
    free = np.maximum(np.array([width, height]) - 4.0 - (hi - lo), 0.0)  # room left, 2 px each side
    if centred:  # the box's centre within 8 % of the frame's side from the frame's centre
        free = np.minimum(free, 0.16 * np.array([width, height]))
    x, y = np.array([width, height]) / 2 - (lo + hi) / 2 + (np.array([fx, fy]) - 0.5) * free
    placement = Placement(scale, angle, flip, float(x), float(y))
    box = (x + lo[0], y + lo[1], x + hi[0], y + hi[1])
    return placement, tuple(float(v) for v in box)  # type: ignore[return-value]
