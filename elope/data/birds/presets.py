"""The bird family's presets: how large the bird is, where it stands, what hides and imitates it.

Every preset shares the photographic backgrounds, the four poses, up to 20 degrees of rotation, mirroring,
the per-image colour and lighting jitter, a few background leaves, twigs and berries, and a one-in-three
chance of one occluder; each moves one or two knobs, like the critters' suite (``synthetic_knobs.SUITE``):

========== =============== ===========================================================================
preset     bird size       what else
========== =============== ===========================================================================
small      10-20 %         -
medium     20-35 %         -
large      35-60 %         -
centred    10-20 %         the box's centre within 8 % of the frame's centre
occluded   20-35 %         2-4 occluders in front of the bird, each hiding 5-35 % of its outline
lookalikes 20-35 %         2-3 plain birds (the same shape, none of the class parts) beside it
cluttered  13-22 %         many leaves, twigs and berries in the class colours, 1 lookalike, occluders
========== =============== ===========================================================================

Bird size: the longer side of the box any species could fill in the drawn pose, as a fraction of the
frame's longer side (a species without a crest or with a short bill fills a little less).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from elope.data.birds.shapes import POSES

__all__ = ["BIRD_PRESETS", "BIRD_SUITE", "BirdPreset", "bird_preset"]


@dataclass(frozen=True)
class BirdPreset:
    """The knobs of one preset (counts are ``(low, high)``, both included)."""

    scale: tuple[float, float] = (0.20, 0.35)
    placement: str = "anywhere"  # or "centred"
    poses: tuple[str, ...] = POSES
    rotation: float = 20.0  # largest |rotation| in degrees
    occluders: tuple[int, int] = (0, 1)
    occluder_chance: float = 0.35  # with (0, 1): the chance of one occluder
    cover: tuple[float, float] = (0.0, 0.35)  # share of the bird's outline one occluder may hide
    lookalikes: tuple[int, int] = (0, 0)
    leaves: tuple[int, int] = (1, 5)
    twigs: tuple[int, int] = (1, 3)
    berries: tuple[int, int] = (1, 4)
    aspect: float = 1.0  # frame width / height; the size is the longer side

    def to_dict(self) -> dict[str, object]:
        """The knobs, for the data set's metadata."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


_BASE = BirdPreset()
_SMALL, _MEDIUM = (0.10, 0.20), (0.20, 0.35)

#: ``elope data synth --family birds --preset NAME``.
BIRD_PRESETS: dict[str, BirdPreset] = {
    "small": replace(_BASE, scale=_SMALL),
    "medium": replace(_BASE, scale=_MEDIUM),
    "large": replace(_BASE, scale=(0.35, 0.60)),
    "centred": replace(_BASE, scale=_SMALL, placement="centred"),
    "occluded": replace(_BASE, scale=_MEDIUM, occluders=(2, 4), occluder_chance=1.0, cover=(0.05, 0.35)),
    "lookalikes": replace(_BASE, scale=_MEDIUM, lookalikes=(2, 3)),
    "cluttered": replace(
        _BASE,
        scale=(0.13, 0.22),
        leaves=(15, 30),
        twigs=(3, 6),
        berries=(8, 16),
        lookalikes=(1, 1),
        occluders=(1, 2),
    ),
}

#: The held-out family of ``elope suite`` (``--dists birds-small,...``): recipe choices are made on the
#: critters' distributions, these are read once to judge them.
BIRD_SUITE: dict[str, str] = {f"birds-{name}": name for name in BIRD_PRESETS}


def bird_preset(
    name: str, *, scale: tuple[float, float] | None = None, aspect: float | None = None
) -> BirdPreset:
    """The named preset, with the bird size range and the frame's aspect replaced when given; a
    ``ValueError`` naming the choices for an unknown name or a value out of range."""
    if name not in BIRD_PRESETS:
        raise ValueError(f"the bird family has no preset {name!r}; choose from {', '.join(BIRD_PRESETS)}")
    preset = BIRD_PRESETS[name]
    if scale is not None:
        low, high = (float(v) for v in scale)
        if not 0.05 <= low <= high <= 0.95:
            raise ValueError(
                f"object_scale must be (low, high) with 0.05 <= low <= high <= 0.95, got {scale}"
            )
        preset = replace(preset, scale=(low, high))
    if aspect is not None:
        if not 0.25 <= float(aspect) <= 4.0:
            raise ValueError(f"aspect must lie in [0.25, 4], got {aspect}")
        preset = replace(preset, aspect=float(aspect))
    return preset
