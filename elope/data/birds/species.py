"""The species of the bird family: five small parts at the bird's extremities and edges name a class.

Each species is one value of each of five factors, the way field guides separate similar birds:

* the crest (none, or a spike, tuft or plume, each in a colour);
* the bill (short and conical, long and thin, or hooked, each in a colour);
* the eye ring (none, or a colour);
* the wing bars (none, or one or two bars in a colour);
* the tail tip (plain, or a band of colour at the tip).

Everything else about a bird (body, belly and wing colours, size, proportions, pose) is drawn per image
and is the same for every class, so only these parts carry the class. Species are picked from the grid of
all combinations in a seeded order, keeping only those that differ from every species kept before in at
least two factors: one occluded or unlucky part never makes two classes identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

__all__ = [
    "BILLS",
    "COLOURS",
    "CRESTS",
    "EYE_RINGS",
    "LOOKALIKE",
    "MAX_SPECIES",
    "TAIL_TIPS",
    "WING_BARS",
    "Species",
    "species_table",
]

#: Class-part colours (RGB in [0, 1]): saturated, unlike the earthy body colours drawn per image.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.09),
    "black": (0.07, 0.07, 0.08),
    "yellow": (0.96, 0.83, 0.12),
    "orange": (0.96, 0.50, 0.08),
    "blue": (0.16, 0.36, 0.86),
    "white": (0.96, 0.96, 0.93),
    "horn": (0.55, 0.50, 0.42),  # the lookalikes' bill: no species has it
}

CRESTS: tuple[tuple[str, str | None], ...] = (
    ("none", None),
    ("spike", "red"),
    ("spike", "black"),
    ("tuft", "yellow"),
    ("tuft", "red"),
    ("plume", "black"),
    ("plume", "blue"),
)
BILLS: tuple[tuple[str, str], ...] = (
    ("short", "black"),
    ("short", "yellow"),
    ("short", "red"),
    ("long", "black"),
    ("long", "orange"),
    ("hooked", "black"),
    ("hooked", "yellow"),
)
EYE_RINGS: tuple[str | None, ...] = (None, "white", "yellow", "red")
WING_BARS: tuple[tuple[int, str | None], ...] = (
    (0, None),
    (1, "white"),
    (2, "white"),
    (1, "yellow"),
    (2, "yellow"),
)
TAIL_TIPS: tuple[str | None, ...] = (None, "white", "black", "yellow")

#: How many species :func:`species_table` can name (classes of ``elope data synth --family birds``).
MAX_SPECIES = 72


@dataclass(frozen=True)
class Species:
    """One class: a value of each part factor (``None``: the part is plain, i.e. absent or body-coloured)."""

    crest: str
    crest_colour: str | None
    bill: str
    bill_colour: str
    eye_ring: str | None
    bars: int
    bar_colour: str | None
    tail_tip: str | None

    @property
    def name(self) -> str:
        """A folder-safe name built from the parts, e.g. ``Redspike_Shortblackbill_Whitering_Twobars``."""
        words = [] if self.crest == "none" else [f"{self.crest_colour}{self.crest}"]
        words.append(f"{self.bill}{self.bill_colour}bill")
        if self.eye_ring:
            words.append(f"{self.eye_ring}ring")
        if self.bars:
            words.append(f"{('one', 'two')[self.bars - 1]}{self.bar_colour}bar")
        if self.tail_tip:
            words.append(f"{self.tail_tip}tip")
        return "_".join(w.capitalize() for w in words)

    def to_dict(self) -> dict[str, object]:
        """The parts, for the data set's metadata."""
        return {
            "name": self.name,
            "crest": self.crest,
            "crest_colour": self.crest_colour,
            "bill": self.bill,
            "bill_colour": self.bill_colour,
            "eye_ring": self.eye_ring,
            "wing_bars": self.bars,
            "bar_colour": self.bar_colour,
            "tail_tip": self.tail_tip,
        }


#: The decoys' species: the same bird with no crest, a horn-coloured bill no species has, no eye ring, no
#: wing bars and a plain tail (a lookalike carries none of the class parts).
LOOKALIKE = Species("none", None, "medium", "horn", None, 0, None, None)


def _species(index: tuple[int, ...]) -> Species:
    crest, bill, ring, bars, tail = index
    return Species(*CRESTS[crest], *BILLS[bill], EYE_RINGS[ring], *WING_BARS[bars], TAIL_TIPS[tail])


def species_table(classes: int, seed: int = 0) -> list[Species]:
    """``classes`` species, each differing from every other in at least two of the five part factors;
    the same ``seed`` gives the same table (its order is a seeded shuffle of all combinations)."""
    if not 2 <= classes <= MAX_SPECIES:
        raise ValueError(f"classes must lie in [2, {MAX_SPECIES}] for the bird family, got {classes}")
    sizes = (len(CRESTS), len(BILLS), len(EYE_RINGS), len(WING_BARS), len(TAIL_TIPS))
    grid = np.array(list(product(*(range(n) for n in sizes))))
    order = np.random.default_rng([seed, 28]).permutation(len(grid))
    kept: list[np.ndarray] = []
    for i in order:
        candidate = grid[i]
        if all(int((candidate != k).sum()) >= 2 for k in kept):
            kept.append(candidate)
            if len(kept) == classes:
                break
    return [_species(tuple(int(v) for v in k)) for k in kept]
