"""The scripts behind the research record (``docs/research/``, ``docs/results*.md``): each trains or reads
runs and prints or writes the numbers a page quotes. Run one as a module from the repository root,
``python -m elope.research.experiments.NAME --help``; its docstring gives the command line the page used.
They import the package downward only (``tests/test_architecture.py``). Their raw outputs stay in
:data:`RECORD` (``docs/experiments/``: ``cpu/``, ``h200/``, the recipes and GPU session scripts), where the
pages link them.

Scripts: ``birds_measure``, ``birds_sheet`` (the bird family, docs/data-families.md); ``box_coverage``,
``localization_probe``, ``localizer_target``, ``recipe_pairs``, ``tau_sweep``, ``paired_claims`` (the
recipe's choices, docs/research/history.md); ``crop_dev``, ``suite_dev``, ``suite_dev_scores``,
``suite_fallback``, ``suite_localization``, ``suite_localizer_target`` (the suite, docs/research/suite.md);
``demo_seeds`` (the demo's reference, docs/research/demo.md); ``embedding``
(docs/results-embedding.md); ``practitioner_runs``, ``practitioner_measure``
(docs/results-practitioner.md); ``synthetic_difficulty`` (the procedural set's difficulty).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RECORD"]

#: ``docs/experiments/`` of a source checkout: the raw outputs the scripts write and the pages link.
RECORD = Path(__file__).resolve().parents[3] / "docs" / "experiments"
