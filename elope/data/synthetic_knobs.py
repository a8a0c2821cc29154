"""The difficulty knobs of the procedural set (:mod:`elope.data.synthetic`): :class:`Difficulty`, the
named presets and :func:`resolve_difficulty`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "DIFFICULTIES",
    "KNOB_OPTIONS",
    "MIN_SIDE",
    "PLACEMENTS",
    "SUITE",
    "Difficulty",
    "checked_frame",
    "frame_size",
    "resolve_difficulty",
]

PLACEMENTS = ("anywhere", "centred")

_MAX_LOOKALIKES = 8


_MAX_DECOYS = 64


_MAX_DISTRACTORS = 8


@dataclass(frozen=True)
class Difficulty:
    """The knobs that make the set harder; ``Difficulty()`` draws the original set.

    Attributes:
        object_scale: (low, high) range of the critter's width as a fraction of the image side.
        part_scale: size of the coloured head, wing patch and tail bands relative to the original
            (< 1: the head keeps its size and shape, only a smaller coloured crown on it carries the class).
        part_contrast: how far the head and wing colours stand out from the body colour; 1 = the saturated
            palette, 0.3 = shades 30 % of the way from the body colour to it (the colours move closer to
            each other by the same factor, while the per-image colour jitter stays the same).
        decoys: (min, max) number of loose blobs in the part colours (shaded by ``part_contrast``, the size
            of the head's colour) on the background.
        distractors: number of partial critters (body, wing patch and head in random part colours; no tail,
            legs or beak) cut by the frame edge, drawn on the background under the critter.
        clutter: contrast of the background shapes (rectangles, ellipses, lines) against the background's
            mean colour; 1 = the original clutter, 0 = none visible (the gradient and noise stay).
        placement: ``anywhere`` (uniform over the frame) or ``centred`` (the critter's centre within 5 % of
            the shorter side from the frame's centre, as in a photo aimed at it).
        aspect: frame width / height; the longer side is the dataset's ``size``, and ``object_scale`` is a
            fraction of the *shorter* side (1 = square, 16/9 = a landscape photo, 3/4 = a portrait one).
        lookalikes: whole critters of the same shape (body, head, beak, tail, legs) in the plain body colour,
            without the coloured parts that name a class, on the background: shape decoys for the
            localizer that carry no class evidence.

    Decoys, distractors, lookalikes and clutter lie on the background, under the critter, so the box stays
    the exact extent of the critter. Every knob at its default draws from the random generator exactly as
    before.
    """

    object_scale: tuple[float, float] = (0.30, 0.60)
    part_scale: float = 1.0
    part_contrast: float = 1.0
    decoys: tuple[int, int] = (2, 4)
    distractors: int = 0
    clutter: float = 1.0
    placement: str = "anywhere"
    aspect: float = 1.0
    lookalikes: int = 0

    def __post_init__(self) -> None:
        low, high = self.object_scale
        if not 0.05 <= low <= high <= 1.0:
            raise ValueError(
                f"object_scale must be (low, high) with 0.05 <= low <= high <= 1, got {(low, high)}"
            )
        if not 0.2 <= self.part_scale <= 1.0:
            raise ValueError(f"part_scale must lie in [0.2, 1], got {self.part_scale}")
        if not 0.05 <= self.part_contrast <= 1.0:
            raise ValueError(f"part_contrast must lie in [0.05, 1], got {self.part_contrast}")
        low, high = self.decoys
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high <= _MAX_DECOYS):
            raise ValueError(
                f"decoys must be (min, max) whole numbers with 0 <= min <= max <= {_MAX_DECOYS}, "
                f"got {self.decoys}"
            )
        if not (isinstance(self.distractors, int) and 0 <= self.distractors <= _MAX_DISTRACTORS):
            raise ValueError(
                f"distractors must be a whole number in [0, {_MAX_DISTRACTORS}], got {self.distractors}"
            )

        if not 0.0 <= self.clutter <= 1.0:
            raise ValueError(f"clutter must lie in [0, 1], got {self.clutter}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if not 0.25 <= self.aspect <= 4.0:
            raise ValueError(f"aspect (width / height) must lie in [0.25, 4], got {self.aspect}")
        if not (isinstance(self.lookalikes, int) and 0 <= self.lookalikes <= _MAX_LOOKALIKES):
            raise ValueError(
                f"lookalikes must be a whole number in [0, {_MAX_LOOKALIKES}], got {self.lookalikes}"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "object_scale": list(self.object_scale),
            "part_scale": self.part_scale,
            "part_contrast": self.part_contrast,
            "decoys": list(self.decoys),
            "distractors": self.distractors,
            "clutter": self.clutter,
            "placement": self.placement,
            "aspect": self.aspect,
            "lookalikes": self.lookalikes,
        }


def frame_size(size: int, aspect: float = 1.0) -> tuple[int, int]:
    """``(width, height)`` of a frame whose longer side is ``size`` and whose width / height is ``aspect``."""
    if aspect >= 1.0:
        return size, max(1, round(size / aspect))
    return max(1, round(size * aspect)), size


#: The shortest side of a procedural image, whatever its aspect: the smallest ``size`` of a square one.
MIN_SIDE = 32


def checked_frame(size: int, aspect: float = 1.0) -> tuple[int, int]:
    """:func:`frame_size`, refused (``ValueError`` naming both values and the smallest ``size`` that
    works) when the shorter side would be under :data:`MIN_SIDE` pixels (``size`` 32 at aspect 4: 32x8)."""
    width, height = frame_size(size, aspect)
    if min(width, height) >= MIN_SIDE:
        return width, height
    smallest = max(size, int(MIN_SIDE * max(aspect, 1.0 / aspect)) - 1)
    while min(frame_size(smallest, aspect)) < MIN_SIDE:
        smallest += 1
    raise ValueError(
        f"size {size} at aspect {aspect:g} makes {width}x{height} images, whose shorter side is under "
        f"{MIN_SIDE} pixels: use size >= {smallest} at this aspect, or an aspect nearer 1"
    )


_ORIGINAL = Difficulty()


# What the generalization suite's distributions share: parts at the original size, colours 60 % of the way
# from the body colour, background shapes at 0.6 contrast, 2-4 decoy blobs; each distribution then moves
# one or two knobs away from its base, the way real photo collections differ from each other.
_SUITE_BASE = Difficulty(part_scale=1.0, part_contrast=0.6, clutter=0.6, decoys=(2, 4))
_SMALL, _MEDIUM = (0.10, 0.25), (0.25, 0.45)

#: The distributions of the generalization suite (``elope suite``): object scale (small, medium, large),
#: placement (small and centred), clutter (heavy shapes, many decoys, partial critters), lookalikes (whole
#: critter shapes without class colours), faint parts (smaller and closer to the body colour) and a
#: 16:9 frame. None of them is the demo's set (``elope/configs/synthetic.yaml``).
SUITE: dict[str, Difficulty] = {
    "small": replace(_SUITE_BASE, object_scale=_SMALL),
    "medium": replace(_SUITE_BASE, object_scale=_MEDIUM),
    "large": replace(_SUITE_BASE, object_scale=(0.40, 0.70)),
    "centred": replace(_SUITE_BASE, object_scale=_SMALL, placement="centred"),
    "cluttered": replace(_SUITE_BASE, object_scale=_MEDIUM, clutter=1.0, decoys=(6, 10), distractors=2),
    "lookalikes": replace(_SUITE_BASE, object_scale=_MEDIUM, lookalikes=2),
    "faint": replace(_SUITE_BASE, object_scale=_MEDIUM, part_scale=0.6, part_contrast=0.35),
    "wide": replace(_SUITE_BASE, object_scale=_MEDIUM, aspect=16 / 9),
}

#: Named settings of :class:`Difficulty`: ``default`` is the original set (for small CNNs from scratch),
#: ``fine`` the set for ImageNet-pretrained backbones at 224 px (see :mod:`elope.data.synthetic`), and the
#: distributions of the generalization suite (:data:`SUITE`).
DIFFICULTIES: dict[str, Difficulty] = {
    "default": _ORIGINAL,
    "fine": Difficulty(
        object_scale=(0.2, 0.4), part_scale=0.7, part_contrast=0.4, decoys=(4, 8), distractors=1
    ),
    **SUITE,
}


def _pair(name: str, value: object, kind: type) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    low, high = value  # type: ignore[misc]
    if kind is int:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (low, high)):
            raise ValueError(f"{name} must be whole numbers, got {value!r}")
        return int(low), int(high)
    return float(low), float(high)


def resolve_difficulty(
    difficulty: str | Difficulty = "default",
    *,
    object_scale: tuple[float, float] | None = None,
    part_scale: float | None = None,
    part_contrast: float | None = None,
    decoys: tuple[int, int] | None = None,
    distractors: int | None = None,
    clutter: float | None = None,
    placement: str | None = None,
    aspect: float | None = None,
    lookalikes: int | None = None,
) -> Difficulty:
    """The named preset (or a :class:`Difficulty`) with every knob that is not ``None`` replaced.

    Raises ``ValueError`` naming the knob for an unknown preset or a value out of range.
    """
    if isinstance(difficulty, Difficulty):
        base = difficulty
    elif difficulty in DIFFICULTIES:
        base = DIFFICULTIES[difficulty]
    else:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}")
    changes: dict[str, object] = {}
    if object_scale is not None:
        changes["object_scale"] = _pair("object_scale", object_scale, float)
    if part_scale is not None:
        changes["part_scale"] = float(part_scale)
    if part_contrast is not None:
        changes["part_contrast"] = float(part_contrast)
    if decoys is not None:
        changes["decoys"] = _pair("decoys", decoys, int)
    for name, value in (("distractors", distractors), ("lookalikes", lookalikes)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            changes[name] = int(value)
    if clutter is not None:
        changes["clutter"] = float(clutter)
    if placement is not None:
        changes["placement"] = str(placement)
    if aspect is not None:
        changes["aspect"] = float(aspect)
    return replace(base, **changes) if changes else base


#: The knobs as command-line options of ``elope data synth``: name → (type, (low, high) bounds of each
#: value or None, help), one table for the command instead of a copy of every knob; a tuple of types is a
#: pair, a tuple of strings a choice. The bounds are :class:`Difficulty`'s own checks.
KNOB_OPTIONS: dict[str, tuple[object, tuple[float, float] | None, str]] = {
    "object_scale": ((float, float), (0.05, 1.0), "Critter width / image side: LOW HIGH [preset]."),
    "part_scale": (float, (0.2, 1.0), "Size of the coloured parts [preset]."),
    "part_contrast": (float, (0.05, 1.0), "Part colours vs body colour [preset]."),
    "decoys": ((int, int), (0, _MAX_DECOYS), "MIN MAX decoy blobs per image [preset]."),
    "distractors": (int, (0, _MAX_DISTRACTORS), "Partial critters at the frame edge [preset]."),
    "clutter": (float, (0.0, 1.0), "Contrast of the background shapes [preset]."),
    "placement": (PLACEMENTS, None, "anywhere | centred: where the critter stands [preset]."),
    "aspect": (
        float,
        (0.25, 4.0),
        f"Frame width / height; --size is the longer side, the shorter one at least {MIN_SIDE} px [preset].",
    ),
    "lookalikes": (
        int,
        (0, _MAX_LOOKALIKES),
        "Plain critter shapes (no class colours) on the background [preset].",
    ),
}
