"""What the commands do, as functions: evaluate a run (:mod:`.evaluate`), predict image files
(:mod:`.predict`), draw the localization examples (:mod:`.examples`, :mod:`.visualize`), the ablation of
Table 5 (:mod:`.ablate`), the demo (:mod:`.demo`) and the MACs of Table 3 (:mod:`.profile`)."""
