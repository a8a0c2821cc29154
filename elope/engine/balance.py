"""Long-tailed training data: the cross-entropy's class weights (``loss.class_weights``).

The paper trains on balanced sets (CUB, Cars, Aircraft hold 30-100 training images per class); people's
own photos rarely are. Two remedies, both recipe keys and both off by default (the paper's recipe):

* ``train.sampler: balanced`` draws classes uniformly (:func:`elope.engine.sampling.balanced_draws`);
* ``loss.class_weights`` weighs the cross-entropy term of Eq. (1) by class (:func:`class_weights`):
  ``inverse`` w_c ∝ 1/n_c, ``sqrt_inverse`` w_c ∝ 1/√n_c (n_c: training images of class c), scaled so that
  Σ_c n_c w_c = N: the average training image keeps weight 1, so λ of Eq. (1) keeps its meaning.
  ``F.cross_entropy(weight=w)`` divides by the batch's total weight (a weighted mean).

The class-mean loss L_e (Eqs. 5-10) is not re-weighted: each class mean moves only with the images of its
class in the batch (Eqs. 6-7), and a class absent from a batch keeps its mean, whatever the sampler
(``tests/test_engine_balance.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["CLASS_WEIGHTS", "class_weights"]

CLASS_WEIGHTS = ("none", "inverse", "sqrt_inverse")
_POWER = {"inverse": 1.0, "sqrt_inverse": 0.5}


def class_weights(targets: Sequence[int], num_classes: int, kind: str) -> Tensor | None:
    """Per-class weights (C,) float32 of the cross-entropy for training labels ``targets``; None for
    ``none``. A class without training images gets weight 0 (it never appears in a batch anyway)."""
    if kind not in CLASS_WEIGHTS:
        raise ValueError(f"unknown loss.class_weights {kind!r}; choose one of {', '.join(CLASS_WEIGHTS)}")
    if kind == "none":
        return None
    counts = torch.bincount(torch.as_tensor(list(targets), dtype=torch.long), minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.clamp(min=1).pow(-_POWER[kind]), torch.zeros_like(counts))
    total = float((counts * weights).sum())
    return (weights * counts.sum() / total).float() if total > 0 else None
