"""What one batch of an evaluation pass gives: :class:`BatchOutputs`, and what a pass asks for: :class:`Want`.

Every pass over a dataset (``evaluate``, ``evaluate --model``, ``embed``, the report, MaxBoxAccV2's
selection pass, the localization study, validation and the check at the end of stage 2) reads the same
outputs from a :class:`elope.evaluation.predictor.Predictor`; each field is None where the pass did not
ask for it or the model cannot give it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["PIPELINES", "BatchOutputs", "Want"]

#: ``crops``: the one-pass pipeline of Fig. 1 (localize, crop, classify the crop); ``whole``: the classifier
#: on the images as given (the stage-1 classifier's training input); ``heatmaps``: the localization module
#: alone (its heatmaps at its own input side and, with ``Want.boxes``, their boxes at the spec's τ; none
#: without a module).
PIPELINES = ("crops", "whole", "heatmaps")


@dataclass(frozen=True)
class Want:
    """What a pass asks of each batch: the ``pipeline`` (:data:`PIPELINES`), the ``top`` classes and scores
    (0: none, the logits only), the raw ``embeddings`` of the crops, and, in the ``heatmaps`` pipeline, the
    ``boxes`` of the heatmaps. A predictor with a teacher (the stage-1 classifier) adds the teacher's pass
    over the whole image; one with test-time augmentation its views."""

    pipeline: str = "crops"
    top: int = 5
    embeddings: bool = False
    boxes: bool = True

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {self.pipeline!r}: choose one of {', '.join(PIPELINES)}")


@dataclass
class BatchOutputs:
    """One batch of a pass, in the order of its images (boxes in pixels of the images given)."""

    predictions: Tensor | None = None  # (B,) softmax argmax (with Want.top)
    top_classes: Tensor | None = None  # (B, top) best classes, best first
    top_scores: Tensor | None = None  # (B, top) their softmax scores
    boxes: Tensor | None = None  # (B, 4) localizer boxes in input pixels (the whole frame without a module)
    embeddings: Tensor | None = None  # (B, dim) raw embeddings of the crops
    mean_map_boxes: Tensor | None = (
        None  # (B, 4) boxes from the teacher's mean feature map of the whole image
    )
    tta_predictions: Tensor | None = None  # (B,) argmax of the softmax averaged over the views (elope.nn.tta)
    tta_embeddings: Tensor | None = None  # (B, dim) mean of the views' l2-normalised embeddings
    heatmaps: Tensor | None = None  # (B, 1, h, w) the localization module's heatmaps (None without one)
    mean_map_heatmaps: Tensor | None = None  # (B, 1, h, w) the teacher's mean feature maps
    mean_map_predictions: Tensor | None = None  # (B,) the teacher's top-1 class of the whole image
    logits: Tensor | None = None  # (B, C) the classifier's logits, as computed (a model's; None exported)
