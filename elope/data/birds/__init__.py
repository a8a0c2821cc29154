"""The bird family: a second procedural fine-grained data set, independent of the critters.

Articulated birds (body, head, bill, crest, wings with bars, tail; perched, upright, foraging or flying)
on photographs shipped with scikit-image, among clutter, lookalikes and occluders. Classes differ only in
small parts at the bird's extremities and edges (crest, bill, eye ring, wing bars, tail tip), as CUB's
species do; body colour, size, proportions and pose vary within a class. Written by :func:`write_birds`
(``elope data synth --family birds --preset NAME``) in the critters' layout; held out from recipe
development (``elope suite --dists birds-small,...``). See docs/data-families.md.

Modules: :mod:`.species` (the class table), :mod:`.shapes` (the bird's polygons), :mod:`.nuisance`
(pose, plumage, placement), :mod:`.raster` (polygons to layers), :mod:`.backgrounds` (photographs),
:mod:`.props` (leaves, branches, bars, berries), :mod:`.scene` (one image), :mod:`.presets`,
:mod:`.writer`.
"""

from elope.data.birds.presets import BIRD_PRESETS, BIRD_SUITE, BirdPreset, bird_preset
from elope.data.birds.species import MAX_SPECIES, Species, species_table
from elope.data.birds.writer import write_birds

__all__ = [
    "BIRD_PRESETS",
    "BIRD_SUITE",
    "MAX_SPECIES",
    "BirdPreset",
    "Species",
    "bird_preset",
    "species_table",
    "write_birds",
]
