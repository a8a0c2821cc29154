"""What "a model you can predict with" means to the tasks: :class:`Predictor`.

A trained run folder (:class:`elope.runs.loaded.LoadedRun`, or a
:class:`elope.evaluation.model_predictor.ModelPredictor` over any model) and a file written by ``elope
export`` (:class:`elope.deploy.runtime.ExportedModel`) all satisfy it, so ``elope predict --run`` and
``--model`` read, resize and normalise images the same way (from ``spec``) and give the same
:class:`elope.Prediction`, and every pass over a dataset runs through the one loop
:func:`elope.evaluation.loop.iterate` whichever the model is.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from elope.evaluation.outputs import BatchOutputs, Want
from elope.nn.model import Prediction
from elope.spec import ModelSpec

__all__ = ["Predictor"]


@runtime_checkable
class Predictor(Protocol):
    """Class names, the spec (τ, crop source the images are resized to, normalisation), the device the
    inputs go to, ``predict`` on a normalised (B, 3, N, N) batch, N = ``spec.crop_source``; for a pass over
    a dataset ``prepare`` (a loader's batch onto the device) and ``predict_batch`` (the
    :class:`BatchOutputs` a :class:`Want` asks for)."""

    classes: list[str]

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def device(self) -> torch.device: ...

    def predict(self, images: Tensor, top: int = 1) -> Prediction: ...

    def prepare(self, images: Tensor) -> Tensor: ...

    def predict_batch(self, images: Tensor, want: Want) -> BatchOutputs: ...
