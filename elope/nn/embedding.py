"""The embedding layer of Sec. 4 of Hanselmann & Ney, "ELoPE", WACV 2020.

It sits between global k-max pooling and the classifier. The classifier reads its raw (un-normalised)
output; the class-mean losses (:mod:`elope.nn.losses`, Eqs. 5-10) read the l2-normalised copy f(x_n).
"""

from __future__ import annotations

from torch import nn

__all__ = ["EmbeddingHead"]


class EmbeddingHead(nn.Sequential):
    """Linear(in_features → dim) → BatchNorm1d → PReLU, the embedding layer of Sec. 4.

    The layer order follows the authors' Torch7 release. The output is *not* normalised: the classifier
    reads it as is; :class:`elope.nn.losses.ClassMeanLoss` normalises its own copy.
    """

    def __init__(self, in_features: int, dim: int = 512) -> None:
        if in_features < 1 or dim < 1:
            raise ValueError(f"in_features and dim must be positive, got {in_features} and {dim}")
        super().__init__(nn.Linear(in_features, dim), nn.BatchNorm1d(dim), nn.PReLU())
        self.in_features = in_features
        self.dim = dim
