"""The difficulty knobs of the procedural set (:mod:`elope.data.synthetic`): :class:`Difficulty`, the
named presets and :func:`resolve_difficulty`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["DIFFICULTIES", "KNOB_OPTIONS", "Difficulty", "resolve_difficulty"]


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

    Decoys, distractors and clutter lie on the background, under the critter, so the box stays the exact
    extent of the critter. Every knob at its default draws from the random generator exactly as before.
    """

    object_scale: tuple[float, float] = (0.30, 0.60)
    part_scale: float = 1.0
    part_contrast: float = 1.0
    decoys: tuple[int, int] = (2, 4)
    distractors: int = 0
    clutter: float = 1.0

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

    def to_dict(self) -> dict[str, object]:
        return {
            "object_scale": list(self.object_scale),
            "part_scale": self.part_scale,
            "part_contrast": self.part_contrast,
            "decoys": list(self.decoys),
            "distractors": self.distractors,
            "clutter": self.clutter,
        }


_ORIGINAL = Difficulty()


#: Named settings of :class:`Difficulty`: ``default`` is the original set (for small CNNs from scratch),
#: ``fine`` the set for ImageNet-pretrained backbones at 224 px (see :mod:`elope.data.synthetic`).
DIFFICULTIES: dict[str, Difficulty] = {
    "default": _ORIGINAL,
    "fine": Difficulty(
        object_scale=(0.2, 0.4), part_scale=0.7, part_contrast=0.4, decoys=(4, 8), distractors=1
    ),
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
    if distractors is not None:
        if isinstance(distractors, bool) or not isinstance(distractors, (int, np.integer)):
            raise ValueError(f"distractors must be a whole number, got {distractors!r}")
        changes["distractors"] = int(distractors)
    if clutter is not None:
        changes["clutter"] = float(clutter)
    return replace(base, **changes) if changes else base


#: The knobs as command-line options of ``elope data synth`` (name → click type, help), one table for the
#: command instead of a copy of every knob.
KNOB_OPTIONS: dict[str, tuple[object, str]] = {
    "object_scale": ((float, float), "Critter width / image side: LOW HIGH [preset]."),
    "part_scale": (float, "Size of the coloured parts, 0.2-1 [preset]."),
    "part_contrast": (float, "Part colours vs body colour, 0.05-1 [preset]."),
    "decoys": ((int, int), "MIN MAX decoy blobs per image [preset]."),
    "distractors": (int, "Partial critters at the frame edge [preset]."),
    "clutter": (float, "Contrast of the background shapes, 0-1 [preset]."),
}
