"""The product: what the commands do, as functions. Evaluate a run (:mod:`.evaluate`), predict image files
(:mod:`.predict`), embed and enroll (:mod:`.embed`, :mod:`.enroll`), the report (:mod:`.report`), the
localization examples (:mod:`.examples`, :mod:`.visualize`), the demo (:mod:`.demo`) and the MACs of
Table 3 (:mod:`.profile`). The studies (ablation, suite, localization study) are :mod:`elope.research`."""
