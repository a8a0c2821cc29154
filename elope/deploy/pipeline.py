"""The one-pass pipeline of Fig. 1 as one module (:class:`OnePassPipeline`), what ``elope export`` traces and
:func:`elope.deploy.compiled.compile_model` compiles, and the names its graph's inputs and outputs carry.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from elope.exported import (  # METADATA_KEY: ONNX metadata_props (TorchScript: + ".json")
    EMBEDDING_OUTPUT,
    METADATA_KEY,
)
from elope.nn.model import ELoPE
from elope.nn.tta import average_scores, check_tta, crop_views

__all__ = ["EMBEDDING_NAME", "INPUT_NAME", "METADATA_KEY", "OUTPUT_NAMES", "OnePassPipeline", "TracingQuiet"]


INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "boxes", "heatmaps")
EMBEDDING_NAME = (
    EMBEDDING_OUTPUT  # the last output with `elope export --embedding` (what `elope serve` returns)
)


class OnePassPipeline(nn.Module):
    """The one-pass pipeline (Fig. 1) as one module: ``images -> (scores, boxes[, heatmaps])``.

    It is :meth:`elope.ELoPE.predict` without the top-k: :meth:`elope.ELoPE.crop` (resize to the localizer
    input, localization module, :func:`~elope.nn.localization.heatmap_to_box`,
    :func:`~elope.nn.crop.crop_and_resize`) followed by the model's classifier and a softmax over all
    classes, at the model's spec (τ, classifier side). Put the model in eval mode first. With ``tta``
    (:data:`elope.nn.tta.TTA_VIEWS`) the scores are the softmax averaged over the views of the crop
    (:func:`elope.nn.tta.crop_views`; boxes and heatmaps unchanged), what ``elope evaluate --tta`` measures.
    With ``embeddings=True`` the raw embedding of the crop itself (Sec. 4, what the class-mean loss reads;
    the first view under ``tta``) is returned last, (B, dim).
    :func:`elope.deploy.compiled.compile_model` compiles this module too, so the exported and the compiled
    pipeline are the same code.
    """

    def __init__(self, model: ELoPE, tta: str | None = None, embeddings: bool = False) -> None:
        super().__init__()
        self.model = model
        self.has_heatmaps = model.localizer is not None
        self.tta = check_tta(tta)
        self.embeddings = embeddings

    def output_names(self) -> list[str]:
        """The names of :meth:`forward`'s outputs, in order."""
        names = list(OUTPUT_NAMES if self.has_heatmaps else OUTPUT_NAMES[:2])
        return [*names, EMBEDDING_NAME] if self.embeddings else names

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        crops, boxes, heatmaps = self.model.crop(images)
        views = [crops] if self.tta is None else crop_views(crops, self.tta)
        logits, embeddings = zip(*(self.model(view, return_embeddings=True) for view in views))
        scores = logits[0].float().softmax(dim=1) if self.tta is None else average_scores(list(logits))
        outputs = [scores, boxes]
        if heatmaps is not None:
            outputs.append(heatmaps)
        if self.embeddings:
            outputs.append(embeddings[0].float())
        return tuple(outputs)


class TracingQuiet(warnings.catch_warnings):
    """Silence the exporter's expected warnings: shape checks traced as constants (the input size is fixed,
    and :func:`check_export` verifies the graph), the legacy-exporter notice, roi_align's sampling_ratio
    note (-1 and ONNX's 0 are the same adaptive rule) and torch.jit's deprecation notices."""

    def __enter__(self) -> Any:
        result = super().__enter__()
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*The feature will be removed.*")
        warnings.filterwarnings("ignore", message=".*RoIAlign with a non-zero sampling_ratio.*")
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated.*")
        return result
