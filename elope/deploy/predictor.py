"""What "a model you can predict with" means to the tasks: :class:`Predictor`.

A trained run folder (:class:`elope.runs.loaded.LoadedRun`) and a file written by ``elope export``
(:class:`elope.deploy.runtime.ExportedModel`) both satisfy it, so ``elope predict --run`` and ``--model``
read, resize and normalise images the same way (from ``spec``) and give the same
:class:`elope.Prediction`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from elope.nn.model import Prediction
from elope.spec import ModelSpec

__all__ = ["Predictor"]


@runtime_checkable
class Predictor(Protocol):
    """Class names, the spec (τ, crop source the images are resized to, normalisation), the device the
    inputs go to, and ``predict`` on a normalised (B, 3, N, N) batch, N = ``spec.crop_source``."""

    classes: list[str]

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def device(self) -> torch.device: ...

    def predict(self, images: Tensor, top: int = 1) -> Prediction: ...
