"""The bird's outline as polygons, in the bird's own frame (body length 1, facing +x, y up).

A bird is a list of :class:`Part` in drawing order (back to front): far wing (in flight), tail and its
tip, legs, body and belly, crest, head, bill, eye ring and eye, near wing and its bars. Curved parts are
polygons with many vertices, so a part's region is exact and every later step (rotation, scale, flip)
moves vertices only. Each part says whether it carries the class (:attr:`Part.evidence`): crest, bill,
eye ring, wing bars and tail tip, all small and at the bird's extremities or edges.

Poses articulate the same parts: ``perched`` (body tilted up, tail down, legs), ``upright`` (body near
vertical), ``foraging`` (body level or head-down, head lowered, tail cocked) and ``flying`` (wings spread
above the body, no legs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elope.data.birds.species import COLOURS, Species

__all__ = ["POSES", "Part", "Plumage", "Pose", "bird_parts", "feet"]

POSES = ("perched", "upright", "foraging", "flying")

Colour = tuple[float, float, float]

# Wing outlines: (position along the wing, half-width), both in body lengths along the wing's axis.
_FOLDED = ((0.0, 0.07), (0.25, 0.12), (0.65, 0.085), (1.0, 0.0))
_SPREAD = ((0.0, 0.17), (0.3, 0.2), (0.75, 0.12), (1.0, 0.03))
_BARS = {1: ((0.36, 0.44),), 2: ((0.28, 0.34), (0.44, 0.50))}  # along the wing's axis
_TAIL_TIP = 0.78  # the tail's last 22 % carry the tail-tip colour


@dataclass(frozen=True)
class Part:
    """One filled polygon: ``points`` (N x 2), its colour, and whether it carries the class."""

    name: str
    points: np.ndarray
    colour: Colour
    evidence: bool = False


@dataclass(frozen=True)
class Pose:
    """Everything about a bird's shape that is drawn per image and is the same for every class.

    Angles in degrees: ``tilt`` of the body axis above the horizontal, ``head`` of the head's axis,
    ``tail`` of the tail relative to the body axis's backward direction (positive: down), ``wing`` of
    the spread wing above the body axis (flying). Sizes relative to the defaults; ``crest`` and ``bill``
    scale the class parts' lengths a little (the same factor for every class).
    """

    kind: str = "perched"
    tilt: float = 30.0
    head: float = 0.0
    tail: float = 10.0
    wing: float = 100.0
    body_width: float = 1.0
    head_size: float = 1.0
    tail_length: float = 1.0
    crest: float = 1.0
    bill: float = 1.0


@dataclass(frozen=True)
class Plumage:
    """The per-image colours of the parts that do not carry the class."""

    back: Colour
    belly: Colour
    wing: Colour
    primaries: Colour
    tail: Colour
    legs: Colour


def _polar(degrees: np.ndarray | float, radius: np.ndarray | float) -> np.ndarray:
    t = np.radians(degrees)
    return np.stack([np.cos(t) * radius, np.sin(t) * radius], axis=-1)


def _place(points: np.ndarray, origin: np.ndarray | tuple[float, float], degrees: float) -> np.ndarray:
    """Rotate local ``points`` by ``degrees`` and move them to ``origin``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return points @ np.array([[c, s], [-s, c]]) + np.asarray(origin, dtype=float)


def _ellipse(a: float, b: float, start: float = 0.0, stop: float = 360.0, n: int = 48) -> np.ndarray:
    t = np.radians(np.linspace(start, stop, n, endpoint=stop - start < 360.0))
    return np.stack([a * np.cos(t), b * np.sin(t)], axis=-1)


def _half_width(profile: tuple[tuple[float, float], ...], u: float) -> float:
    return float(np.interp(u, [p[0] for p in profile], [p[1] for p in profile]))


def _tapered(
    profile: tuple[tuple[float, float], ...], length: float, u0: float = 0.0, u1: float = 1.0
) -> np.ndarray:
    """The part of a shape along +x with half-widths ``profile`` between ``u0`` and ``u1`` (of ``length``):
    a polygon exactly inside the whole shape (the outline is piecewise linear)."""
    us = [u0, *(p[0] for p in profile if u0 < p[0] < u1), u1]
    top = [(u * length, _half_width(profile, u) * length) for u in us]
    bottom = [(u * length, -_half_width(profile, u) * length) for u in reversed(us)]
    return np.array(top + bottom)


def _wing(pose: Pose, species: Species, plumage: Plumage, far: bool) -> list[Part]:
    """A wing (folded along the body, or spread above it in flight) with its bars and dark primaries."""
    if pose.kind == "flying":
        profile, length = _SPREAD, 0.85 * (0.8 if far else 1.0)
        origin, angle = ((0.02, 0.10) if far else (0.10, 0.10)), pose.wing + (14.0 if far else 0.0)
    else:
        profile, length, origin, angle = _FOLDED, 0.80, (0.24, 0.07), 183.0
    shade = 0.7 if far else 1.0
    wing_colour = tuple(shade * c for c in plumage.wing)
    parts = [
        Part("wing", _place(_tapered(profile, length), origin, angle), wing_colour),  # type: ignore[arg-type]
        Part("primaries", _place(_tapered(profile, length, 0.62), origin, angle),
             tuple(shade * c for c in plumage.primaries)),  # type: ignore[arg-type]
    ]  # fmt: skip
    if species.bars and species.bar_colour:
        colour = tuple(shade * c for c in COLOURS[species.bar_colour])
        for u0, u1 in _BARS[species.bars]:
            band = _place(_tapered(profile, length, u0, u1), origin, angle)
            parts.append(Part("wing bar", band, colour, evidence=True))  # type: ignore[arg-type]
    return parts


def _tail(pose: Pose, species: Species, plumage: Plumage) -> list[Part]:
    """A fan widening from the body's back end; its tip band in the class colour (if any)."""
    profile = ((0.0, 0.14), (1.0, 0.28))
    length, angle = 0.5 * pose.tail_length, 180.0 + pose.tail
    origin = (-0.40, -0.02)
    parts = [Part("tail", _place(_tapered(profile, length), origin, angle), plumage.tail)]
    if species.tail_tip:
        tip = _place(_tapered(profile, length, _TAIL_TIP, 1.0), origin, angle)
        parts.append(Part("tail tip", tip, COLOURS[species.tail_tip], evidence=True))
    return parts


def _crest(species: Species, r: float, stretch: float) -> list[np.ndarray]:
    """Crest polygons in the head's frame (head radius ``r``): a spike, a three-pointed tuft or a plume
    swept back; their bases lie inside the head, which is drawn over them."""
    if species.crest == "spike":
        return [
            np.vstack(
                [_polar(80.0, 0.8 * r), _polar(118.0, r * (1.0 + 1.0 * stretch)), _polar(140.0, 0.8 * r)]
            )
        ]
    if species.crest == "tuft":
        return [
            np.vstack(
                [_polar(a - 9.0, 0.85 * r), _polar(a, r * (1.0 + 0.6 * stretch)), _polar(a + 9.0, 0.85 * r)]
            )
            for a in (88.0, 110.0, 132.0)
        ]
    if species.crest == "plume":
        tip, mid = _polar(168.0, r * (1.0 + 1.7 * stretch)), _polar(135.0, r * (1.0 + 0.7 * stretch))
        return [
            np.vstack(
                [
                    _polar(95.0, 0.85 * r),
                    mid + np.array([0.0, 0.12 * r]),
                    tip,
                    mid - np.array([0.0, 0.1 * r]),
                    _polar(150.0, 0.8 * r),
                ]
            )
        ]
    return []


def _bill(species: Species, r: float, stretch: float) -> np.ndarray:
    """The bill in the head's frame: short and deep (seed-eater), long and thin (probe) or hooked."""
    base = 0.72 * r
    if species.bill == "short":
        length, depth = 0.55 * r * stretch, 0.36 * r
    elif species.bill == "long":
        length, depth = 1.35 * r * stretch, 0.20 * r
    elif species.bill == "hooked":
        length, depth = 0.85 * r * stretch, 0.30 * r
        tip = r + length
        return np.array([(base, depth), (r + 0.6 * length, 0.7 * depth), (tip, 0.0), (tip - 0.06 * r, -0.55 * depth),
                         (r + 0.55 * length, -0.35 * depth), (base, -depth)])  # fmt: skip
    else:  # medium: the lookalikes'
        length, depth = 0.8 * r * stretch, 0.26 * r
    return np.array([(base, depth), (r + length, -0.08 * r), (base, -depth)])


def _head(pose: Pose, species: Species, plumage: Plumage, centre: np.ndarray) -> list[Part]:
    """Crest, head, bill, eye ring and eye, placed at ``centre`` and turned by ``pose.head``."""
    r = 0.16 * pose.head_size
    colour = COLOURS[species.crest_colour] if species.crest_colour else plumage.back
    parts = [
        Part("crest", _place(p, centre, pose.head), colour, evidence=True)
        for p in _crest(species, r, pose.crest)
    ]
    parts.append(Part("head", _place(_ellipse(r, r), centre, pose.head), plumage.back))
    parts.append(
        Part(
            "bill",
            _place(_bill(species, r, pose.bill), centre, pose.head),
            COLOURS[species.bill_colour],
            True,
        )
    )
    eye = np.array([0.35 * r, 0.2 * r])
    if species.eye_ring:
        ring = _place(_ellipse(0.29 * r, 0.29 * r, n=24) + eye, centre, pose.head)
        parts.append(Part("eye ring", ring, COLOURS[species.eye_ring], evidence=True))
    parts.append(
        Part("eye", _place(_ellipse(0.14 * r, 0.14 * r, n=16) + eye, centre, pose.head), (0.03, 0.03, 0.03))
    )
    return parts


def feet(pose: Pose) -> np.ndarray:
    """Where the feet stand (between the two feet, on the perch) in the bird's frame."""
    hip = _place(np.array([[-0.01, -0.12]]), (0.0, 0.0), pose.tilt)[0]
    return np.array([hip[0] + 0.03, -0.30 - 0.05 * np.sin(np.radians(max(pose.tilt, 0.0)))])


def _legs(pose: Pose, plumage: Plumage) -> list[Part]:
    """Two legs straight down from the belly, each with a forward-pointing foot."""
    parts = []
    foot_y = float(feet(pose)[1])
    for x in (0.06, -0.08):
        hx, hy = _place(np.array([[x, -0.12]]), (0.0, 0.0), pose.tilt)[0]
        leg = np.array([(hx - 0.012, hy), (hx + 0.012, hy), (hx + 0.012, foot_y), (hx - 0.012, foot_y)])
        foot = np.array(
            [
                (hx - 0.03, foot_y + 0.012),
                (hx + 0.09, foot_y + 0.008),
                (hx + 0.09, foot_y - 0.012),
                (hx - 0.03, foot_y - 0.016),
            ]
        )
        parts += [Part("leg", leg, plumage.legs), Part("foot", foot, plumage.legs)]
    return parts


def bird_parts(pose: Pose, species: Species, plumage: Plumage) -> list[Part]:
    """The bird's parts in drawing order, in its own frame (body centre at the origin, facing +x)."""
    body_b = 0.19 * pose.body_width
    tilted = [
        Part(p.name, _place(p.points, (0.0, 0.0), pose.tilt), p.colour, p.evidence)
        for p in _tail(pose, species, plumage)
    ]
    if pose.kind == "flying":
        far = _wing(pose, species, plumage, far=True)
        tilted = [
            Part(p.name, _place(p.points, (0.0, 0.0), pose.tilt), p.colour, p.evidence) for p in far
        ] + tilted
    parts = tilted + ([] if pose.kind == "flying" else _legs(pose, plumage))
    parts.append(Part("body", _place(_ellipse(0.5, body_b), (0.0, 0.0), pose.tilt), plumage.back))
    belly = _ellipse(0.5, body_b, 196.0, 344.0, n=32)
    parts.append(
        Part("belly", _place(belly * (0.97, 1.0) + (0.0, 0.02), (0.0, 0.0), pose.tilt), plumage.belly)
    )
    neck = _place(np.array([[0.36, 0.12 * pose.body_width]]), (0.0, 0.0), pose.tilt)[0]
    parts += _head(pose, species, plumage, neck)
    near = _wing(pose, species, plumage, far=False)
    parts += [Part(p.name, _place(p.points, (0.0, 0.0), pose.tilt), p.colour, p.evidence) for p in near]
    return parts
