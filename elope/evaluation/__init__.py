"""Evaluation: the one loop over a dataset, the predictors it runs and the metrics it feeds.

* :mod:`~elope.evaluation.loop`: :func:`iterate`, the one loop (every pass over a dataset: evaluate,
  its report and selection pass, embed, the localization study, validation, the check at the end of
  stage 2);
* :mod:`~elope.evaluation.predictor`: :class:`Predictor`, the protocol of a model you can predict with (a
  run, a model in memory, an exported file); :mod:`~elope.evaluation.model_predictor`:
  :class:`ModelPredictor`, a model in memory as one; :mod:`~elope.evaluation.outputs`: what a pass asks
  for (:class:`Want`) and gets (:class:`BatchOutputs`);
* :mod:`~elope.evaluation.metrics` (accuracies, the nearest class mean, Table 4's IoU hits, streamed for
  many classes), :mod:`~elope.evaluation.localization_metrics` (the field's: top-1 loc, MaxBoxAccV2),
  :mod:`~elope.evaluation.retrieval` (Recall@K, MAP@R).
"""
