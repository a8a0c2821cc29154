"""Research, not product: the studies that measure the method rather than use it. The ablation of Table 5
and the K sweep of Fig. 7 (:mod:`.ablate`, ``elope ablate``), the generalization suite (:mod:`.suite`,
``elope suite``), the localization study that scores every box rule, upsampling and τ from heatmaps
computed once (:mod:`.localization`), and the scripts behind the research record
(:mod:`.experiments`, ``python -m elope.research.experiments.NAME``).

A layer of its own, above :mod:`elope.tasks` (the product: evaluate, predict, embed, enroll, report,
export) and below the commands: research imports the product, never the other way round
(``tests/test_architecture.py``)."""
