"""Test-time augmentation (issue 18 part 3): the classifier's softmax averaged over views of the crop.

Not in the paper (Hanselmann & Ney classify the one crop of Fig. 1 once). The pipeline is unchanged up to
the crop: the localization module runs once, on the image as given, and cuts one box; then each view of
the crop goes through the classifier and the softmax probabilities are averaged. The views
(:data:`TTA_VIEWS`):

* ``flip``: the crop and its horizontal mirror (training augments with horizontal flips, so the classifier
  has seen both; 2 classifier passes per image).

The box and the heatmap stay the single view's; only the scores (and, for the nearest class mean, the
mean of the views' l2-normalised embeddings) change. ``elope evaluate --tta flip`` reports these beside
the single-view numbers, and ``elope export --tta flip`` bakes the average into the one exported graph
(:class:`elope.deploy.pipeline.OnePassPipeline`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from elope.nn.model import ELoPE
from elope.nn.tta_views import TTA_VIEWS, check_tta

__all__ = ["TTA_VIEWS", "ViewsClassification", "average_scores", "check_tta", "classify_views", "crop_views"]


class ViewsClassification(NamedTuple):
    """Output of :func:`classify_views`: the single view (what :meth:`ELoPE.classify_crops` returns) and
    the average over the views."""

    logits: Tensor  # (B, C) the crop itself, single view
    boxes: Tensor  # (B, 4) x1, y1, x2, y2 in pixels of the input
    heatmaps: Tensor | None  # (B, 1, h, w), None without a localization module
    embeddings: Tensor | None  # (B, dim) raw embeddings of the crop, when asked for
    scores: Tensor  # (B, C) float32 softmax probabilities averaged over the views
    view_embeddings: Tensor | None  # (B, dim) mean of the views' l2-normalised embeddings, when asked for


def crop_views(crops: Tensor, tta: str) -> list[Tensor]:
    """The views of a (B, 3, S, S) batch of crops, the crops themselves first."""
    check_tta(tta)
    return [crops, crops.flip(-1)]


def average_scores(logits: list[Tensor]) -> Tensor:
    """The mean over views of the softmax probabilities (float32), (B, C)."""
    return torch.stack([v.float().softmax(dim=1) for v in logits]).mean(dim=0)


@torch.no_grad()
def classify_views(
    model: ELoPE, images: Tensor, tta: str, *, return_embeddings: bool = False
) -> ViewsClassification:
    """Crop once (:meth:`ELoPE.crop`), classify each view of the crop (:func:`crop_views`) on its own,
    average the softmax. The first view's outputs are :meth:`ELoPE.classify_crops`'s, bit for bit (the same
    calls on the same batch)."""
    crops, boxes, heatmaps = model.crop(images)
    outputs = [model(view, return_embeddings=return_embeddings) for view in crop_views(crops, tta)]
    if not return_embeddings:
        return ViewsClassification(outputs[0], boxes, heatmaps, None, average_scores(outputs), None)
    logits = [out[0] for out in outputs]
    normalised = torch.stack([F.normalize(out[1].float(), dim=1) for out in outputs])
    return ViewsClassification(
        logits[0], boxes, heatmaps, outputs[0][1], average_scores(logits), normalised.mean(dim=0)
    )
