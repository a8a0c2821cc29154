"""A model in memory as a :class:`elope.evaluation.predictor.Predictor`: :class:`ModelPredictor`.

A trained run (:meth:`elope.runs.loaded.LoadedRun.predictor`), the model a stage is training (validation,
the check at the end of stage 2) and a run's localization module with its teacher (the localization study)
all run their passes through it, so each batch is computed by the same calls whichever pass reads it: the
one-pass pipeline of Fig. 1 (``docs/architecture.md``, "The pipeline"), the whole image through the
classifier, or the localization module alone (:class:`elope.evaluation.outputs.Want`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from elope.evaluation.outputs import BatchOutputs, Want
from elope.nn.model import ELoPE, Prediction
from elope.nn.tta import classify_views
from elope.spec import ModelSpec

__all__ = ["ModelPredictor"]


@dataclass
class ModelPredictor:
    """``model`` (an :class:`elope.ELoPE`, or its compiled copy) over batches of normalised images.

    ``teacher``: the run's stage-1 classifier, loaded at the run's τ; with it every batch also gets its
    mean feature map of the whole image (Table 4's baseline box) and its class from the same backbone pass
    (:meth:`elope.ELoPE.classify_whole`). ``tta``: test-time augmentation of the crop
    (:func:`elope.nn.tta.classify_views`; the single-view outputs do not change). ``autocast``: the
    precision of a training stage; ``grad_mode``: ``torch.no_grad`` for a model still training (tensors made
    in inference mode could not take part in its next step), inference mode otherwise.
    """

    model: ELoPE
    classes: list[str]
    teacher: ELoPE | None = None
    tta: str | None = None
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext
    grad_mode: Callable[[], AbstractContextManager[object]] = torch.inference_mode
    channels_last: bool = False

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, images: Tensor, top: int = 1) -> Prediction:
        """:meth:`elope.ELoPE.predict` on normalised crop sources (B, 3, N, N), N = ``spec.crop_source``."""
        return self.model.predict(images, top=top)

    def prepare(self, images: Tensor) -> Tensor:
        """A loader's batch on the model's device (channels last where the stage trains so)."""
        images = images.as_subclass(Tensor).to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def predict_batch(self, images: Tensor, want: Want) -> BatchOutputs:
        """The outputs ``want`` asks for of a prepared batch (:meth:`prepare`)."""
        with self.grad_mode(), self.autocast():
            if want.pipeline == "heatmaps":
                out = self._heatmaps(images, want)
            elif want.pipeline == "whole":
                out = BatchOutputs(logits=self.model(images))
            else:
                out = self._crops(images, want)
            if want.top and out.logits is not None:
                top = min(want.top, out.logits.shape[1])
                out.top_scores, out.top_classes = out.logits.float().softmax(dim=1).topk(top, dim=1)
                out.predictions = out.top_classes[:, 0]
            if self.teacher is not None:
                logits, out.mean_map_boxes, out.mean_map_heatmaps = self.teacher.classify_whole(images)
                out.mean_map_predictions = logits.argmax(dim=1)
        return out

    def _crops(self, images: Tensor, want: Want) -> BatchOutputs:
        """Localize, crop and classify the crop once (:meth:`elope.ELoPE.classify_crops`): the softmax and
        the embedding for the nearest class mean come from the same forward pass; with ``tta`` the views
        of the same crop too."""
        embeddings = want.embeddings
        if self.tta is None:
            logits, boxes, heatmaps, emb = self.model.classify_crops(images, return_embeddings=embeddings)
            return BatchOutputs(boxes=boxes, embeddings=emb, heatmaps=heatmaps, logits=logits)
        views = classify_views(self.model, images, self.tta, return_embeddings=embeddings)
        out = BatchOutputs(boxes=views.boxes, embeddings=views.embeddings, heatmaps=views.heatmaps)
        out.logits, out.tta_embeddings = views.logits, views.view_embeddings
        out.tta_predictions = views.scores.argmax(dim=1)
        return out

    def _heatmaps(self, images: Tensor, want: Want) -> BatchOutputs:
        """The localization module alone: its heatmaps (at its own input side) and, with ``want.boxes``,
        their boxes at the spec's τ (:meth:`elope.ELoPE.localize`); nothing without a module (a pass
        that reads the teacher's maps only)."""
        if self.model.localizer is None:
            return BatchOutputs()
        heatmaps = self.model.localizer(images)
        boxes = self.model.heatmap_box(heatmaps, self.spec.tau, images.shape[-2:]) if want.boxes else None
        return BatchOutputs(boxes=boxes, heatmaps=heatmaps)
