"""Global k-max pooling (GKMP), Sec. 3 of Hanselmann & Ney, "ELoPE", WACV 2020.

For every feature map y_d of the last convolutional layer, the values are sorted in descending order
(Eq. 2) and the K largest are averaged (Eq. 3)::

    GKMP(y)_d = 1/K · Σ_{k=1..K} S_{d,k}

K = 1 is global max pooling and K = I·J is global average pooling. The weighted variant of Sec. 3.1
(Eq. 4) learns one weight per rank, shared by all feature maps::

    GKMP(y)_d = 1/K · Σ_{k=1..K} w_k · S_{d,k}

``torch.topk`` selects the K maxima; it is faster than a full ``torch.sort`` for the small K the paper uses
(``benchmarks/pooling.py`` measures both).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GlobalAvgPool2d", "GlobalKMaxPool2d", "global_kmax_pool"]


def _check_k(k: int, height: int, width: int) -> None:
    positions = height * width
    if not 1 <= k <= positions:
        raise ValueError(
            f"global k-max pooling needs 1 <= k <= H·W, got k={k} for a {height}x{width} feature map "
            f"(H·W={positions}); choose k between 1 and {positions}"
        )


def global_kmax_pool(x: Tensor, k: int, weights: Tensor | None = None) -> Tensor:
    """Global k-max pooling, Eq. (3), or its weighted form, Eq. (4), when ``weights`` (shape (k,)) is given.

    Args:
        x: feature maps of shape (B, D, H, W).
        k: number of maxima averaged per feature map, 1 <= k <= H·W.
        weights: optional per-rank weights w_1..w_k (w_1 weighs the largest value).

    Returns:
        Tensor of shape (B, D).
    """
    if x.dim() != 4:
        raise ValueError(f"global_kmax_pool expects a (B, D, H, W) tensor, got shape {tuple(x.shape)}")
    _check_k(k, x.shape[2], x.shape[3])
    if weights is not None and weights.shape != (k,):
        raise ValueError(f"weights must have shape ({k},) for k={k}, got {tuple(weights.shape)}")
    flat = x.flatten(2)
    if weights is None:
        if k == flat.shape[2]:
            return flat.mean(dim=2)
        return flat.topk(k, dim=2, sorted=False).values.mean(dim=2)
    top = flat.topk(k, dim=2, sorted=True).values  # S_{d,1..k}, descending (Eq. 2)
    return (top * weights.to(top.dtype)).sum(dim=2) / k


class GlobalKMaxPool2d(nn.Module):
    """Global k-max pooling layer (Eq. 3); ``weighted=True`` adds the parameter ``weights`` of Eq. (4).

    The weights start at ones, so switching them on (``enable_weights``, the recipe's fourth stage)
    leaves the function unchanged until training moves them.
    """

    weights: nn.Parameter | None

    def __init__(self, k: int = 4, weighted: bool = False) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = k
        if weighted:
            self.weights = nn.Parameter(torch.ones(k))
        else:
            self.register_parameter("weights", None)

    @property
    def weighted(self) -> bool:
        return self.weights is not None

    def enable_weights(self, device: torch.device | str | None = None) -> None:
        """Switch on weighted averaging (Sec. 3.1) with w_k = 1, i.e. without changing the output."""
        if self.weights is None:
            self.weights = nn.Parameter(torch.ones(self.k, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return global_kmax_pool(x, self.k, self.weights)

    def extra_repr(self) -> str:
        return f"k={self.k}, weighted={self.weighted}"


class GlobalAvgPool2d(nn.Module):
    """Global average pooling (the GAP baseline of Table 5): (B, D, H, W) -> (B, D)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))
