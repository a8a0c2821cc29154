"""The class-mean losses of Sec. 4 of Hanselmann & Ney, "ELoPE", WACV 2020, one small class each.

The loss L_e = L_w + L_b (Eq. 5) reads the l2-normalised copy f(x_n) of the embedding.

Class means are updated online from the batch before the loss is computed (Eqs. 6-7)::

    Δμ_c = Σ_n δ(c_n, c) (μ_c^{t-1} - f(x_n)) / (1 + Σ_n δ(c_n, c))
    μ_c^t = μ_c^{t-1} - α Δμ_c

and the loss uses the updated means μ^t, with gradient flowing from μ^t back to the features (the
functional dependence noted under Eq. 8)::

    L_w = 1/(2N) Σ_n ||f(x_n) - μ_{c_n}^t||²                        (Eq. 9)
    L_b = γ/(4|P|) Σ_{(k,c) ∈ P} max(m - ||μ_k^t - μ_c^t||², 0)²     (Eq. 10)

Decision (the paper says "all class-pairs in the current batch"): P is the set of unordered pairs of
distinct classes present in the batch and |P| its size; L_b = 0 when the batch holds fewer than two
classes.

The ablation variants of Table 5, each a class sharing :func:`update_class_means` (the recipe picks one
by name from :data:`LOSSES`; ``loss.variant``):

* ``"full"``   :class:`ClassMeanLoss`: L_w + L_b as above.
* ``"within"`` :class:`WithinClassLoss`: L_w only.
* ``"center"`` :class:`CenterLoss`: the original center loss of Wen et al. (ECCV 2016): no l2-normalisation, the loss
  1/(2N) Σ ||x_n - c_{y_n}||² uses the means *before* the update, and no gradient flows through the
  update (the means are updated from detached features with the same rule, Eqs. 6-7).
* ``"dff"``    :class:`DFFLoss`: Deep Fisher Faces style (BMVC 2017): L_w + L_b with the hinge not squared,
  L_b = γ/(2|P|) Σ max(m - ||μ_k^t - μ_c^t||², 0), whose gradient is Eq. (12) without the factor d.
  Unlike the original DFF, P holds all pairs of the batch, not a sample (as the paper does, Sec. 4.2).

``renormalize_means=True`` l2-normalises μ^t after each update (the authors' Torch7 release does this; the
paper does not mention it), both in the loss and in what is stored. Off by default.

In training mode a loss module stores μ^t (detached) in its buffer ``means``; in eval mode the buffer is left
unchanged and the loss is computed with it as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "LOSS_VARIANTS",
    "CenterLoss",
    "ClassMeanLoss",
    "DFFLoss",
    "WithinClassLoss",
    "between_class_loss",
    "class_mean_loss",
    "update_class_means",
]


def update_class_means(features: Tensor, labels: Tensor, means: Tensor, alpha: float) -> Tensor:
    """Online class-mean update μ^t = μ^{t-1} - α Δμ^{t-1}, Eqs. (6)-(7).

    Args:
        features: (N, dim) features f(x_n) (already normalised where the loss wants it).
        labels: (N,) integer class indices.
        means: (C, dim) class means μ^{t-1}.
        alpha: the learning rate of the means (Table 2: 0.5).

    Returns:
        (C, dim) updated means; differentiable with respect to ``features``. Classes absent from the batch
        keep their mean.
    """
    onehot = _one_hot(labels, means.shape[0], features.dtype)  # δ(c_n, c), (N, C)
    counts = onehot.sum(dim=0)  # Σ_n δ(c_n, c)
    # Σ_n δ(c_n, c)(μ_c - f(x_n)) = count_c · μ_c - Σ_{n: c_n = c} f(x_n)
    delta = (counts[:, None] * means - onehot.T @ features) / (1.0 + counts)[:, None]
    return means - alpha * delta


def _one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """δ(c_n, c) as an (N, C) matrix; unlike ``F.one_hot`` it does not read the labels back to the host."""
    onehot = torch.zeros(labels.shape[0], num_classes, dtype=dtype, device=labels.device)
    return onehot.scatter_(1, labels[:, None], 1.0)


def between_class_loss(means: Tensor, labels: Tensor, gamma: float, margin: float, squared: bool) -> Tensor:
    """L_b over the unordered pairs of distinct classes present in the batch, Eq. (10) (or its DFF form).

    Computed over the pairs of samples (n, m), n < m, with c_n ≠ c_m, each weighted 1 / (N_{c_n} N_{c_m}) so
    that every pair of classes counts once; |P| = p(p-1)/2 for p classes present. Every shape depends on
    the batch size only (an N×N matrix, whatever the number of classes), so nothing is read back to the
    host: no GPU synchronisation per step.
    """
    if labels.shape[0] < 2:
        return means.new_zeros(())
    counts = _one_hot(labels, means.shape[0], means.dtype).sum(dim=0)  # N_c
    present = (counts > 0).sum().to(means.dtype)  # p
    num_pairs = present * (present - 1) / 2  # |P|, 0 when fewer than 2 classes are present
    n_c = counts[labels]
    weight = (labels[:, None] != labels[None, :]).to(means.dtype) / (n_c[:, None] * n_c[None, :])
    mu = means[labels]  # μ_{c_n}, (N, dim)
    sq = mu.pow(2).sum(dim=1)
    dist2 = (sq[:, None] + sq[None, :] - 2.0 * mu @ mu.T).clamp(min=0)  # ||μ_k - μ_c||², (N, N)
    hinge = (margin - dist2).clamp(min=0)
    terms = torch.triu(weight * (hinge.pow(2) if squared else hinge), diagonal=1)
    scale = gamma / (4 if squared else 2)
    return scale * terms.sum() / num_pairs.clamp(min=1)


def _check_inputs(embeddings: Tensor, labels: Tensor, num_classes: int) -> None:
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings (N, dim) and labels (N,), got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    # checked on the CPU only: reading the labels back from an accelerator would stall every step there
    # (an out-of-range label then fails in the scatter of the mean update instead)
    if (
        labels.device.type == "cpu"
        and labels.numel()
        and (int(labels.min()) < 0 or int(labels.max()) >= num_classes)
    ):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for {num_classes} class means, "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )


@dataclass(frozen=True)
class Hyper:
    """The hyper-parameters of a class-mean loss call: α of Eq. (6), γ and m of Eq. (10), whether the
    means are updated from the batch (training) and re-normalised afterwards (authors' release)."""

    alpha: float = 0.5
    gamma: float = 16.0
    margin: float = 0.75
    update: bool = True
    renormalize_means: bool = False


def _within(x: Tensor, labels: Tensor, means: Tensor, p: Hyper) -> tuple[Tensor, Tensor, Tensor]:
    """f(x_n), μ^t (Eqs. 6-7, optionally re-normalised) and L_w (Eq. 9)."""
    f = F.normalize(x, dim=1)
    new_means = update_class_means(f, labels, means, p.alpha) if p.update else means
    if p.update and p.renormalize_means:
        new_means = F.normalize(new_means, dim=1)
    return f, new_means, 0.5 * (f - new_means[labels]).pow(2).sum(dim=1).mean()


def within_loss(
    x: Tensor,
    labels: Tensor,
    means: Tensor,
    p: Hyper,
) -> tuple[Tensor, Tensor]:
    """L_w of Eq. (9) with the updated means: ``(loss, μ^t)``."""
    _, new_means, loss = _within(x, labels, means, p)
    return loss, new_means


def full_loss(
    x: Tensor,
    labels: Tensor,
    means: Tensor,
    p: Hyper,
    squared: bool = True,
) -> tuple[Tensor, Tensor]:
    """L_e = L_w + L_b, Eqs. (5)-(10): ``(loss, μ^t)``; ``squared=False``: the DFF form of L_b."""
    _, new_means, loss = _within(x, labels, means, p)
    return loss + between_class_loss(new_means, labels, p.gamma, p.margin, squared=squared), new_means


def center_loss(
    x: Tensor,
    labels: Tensor,
    means: Tensor,
    p: Hyper,
) -> tuple[Tensor, Tensor]:
    """Wen et al.'s center loss on the raw features: ``(loss, centers moved afterwards)``.

    The loss sees the current centers; they move outside the graph, from detached features.
    """
    loss = 0.5 * (x - means[labels]).pow(2).sum(dim=1).mean()
    new_means = update_class_means(x.detach(), labels, means, p.alpha) if p.update else means
    return loss, new_means


_FUNCTIONS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "full": full_loss,
    "within": within_loss,
    "center": center_loss,
    "dff": partial(full_loss, squared=False),
}
LOSS_VARIANTS = tuple(_FUNCTIONS)


def class_mean_loss(
    embeddings: Tensor,
    labels: Tensor,
    means: Tensor,
    *,
    alpha: float = 0.5,
    gamma: float = 16.0,
    margin: float = 0.75,
    variant: str = "full",
    update: bool = True,
    renormalize_means: bool = False,
) -> tuple[Tensor, Tensor]:
    """The embedding loss L_e = L_w + L_b, Eqs. (5)-(10), or one of its variants, as a plain function.

    Args:
        embeddings: (N, dim) raw output of the embedding layer (normalised here, except for ``"center"``).
        labels: (N,) class indices in [0, C).
        means: (C, dim) class means μ^{t-1}.
        alpha, gamma, margin: α of Eq. (6), γ and m of Eq. (10) (Table 2: 0.5, 16, 0.75).
        variant: one of ``LOSS_VARIANTS`` (see the module docstring).
        update: compute μ^t from the batch (training). If False the means are used as they are.
        renormalize_means: l2-normalise μ^t after the update (authors' release; not in the paper).

    Returns:
        ``(loss, new_means)``: the scalar loss (float32 or wider) and μ^t, still attached to the graph.
    """
    if variant not in _FUNCTIONS:
        raise ValueError(f"unknown class-mean loss variant {variant!r}; choose one of {LOSS_VARIANTS}")
    _check_inputs(embeddings, labels, means.shape[0])
    dtype = torch.promote_types(embeddings.dtype, torch.float32)  # losses in float32 under autocast
    return _FUNCTIONS[variant](
        embeddings.to(dtype),
        labels,
        means.to(dtype),
        Hyper(alpha, gamma, margin, update, renormalize_means),
    )


class WithinClassLoss(nn.Module):
    """L_w of Eq. (9) with the class means kept in the buffer ``means`` (num_classes, dim).

    The base of the class-mean losses. The means start as random l2-normalised vectors (seeded by the
    global torch RNG). In training mode each call computes μ^t from the buffer and the batch (Eqs. 6-7),
    uses it in the loss with gradient flowing back to the embeddings, and then stores it detached. In eval
    mode the buffer is read only.

    For multi-process training, call it on the embeddings and labels gathered from all processes
    (``elope.engine.distributed``) so every process stores the same means.
    """

    variant = "within"
    means: Tensor

    def __init__(
        self,
        num_classes: int,
        dim: int,
        alpha: float = 0.5,
        gamma: float = 16.0,
        margin: float = 0.75,
        *,
        renormalize_means: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"num_classes and dim must be positive, got {num_classes} and {dim}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (Eq. 6) must lie in [0, 1], got {alpha}")
        self.num_classes, self.dim = num_classes, dim
        self.alpha, self.gamma, self.margin = alpha, gamma, margin
        self.renormalize_means = renormalize_means
        self.register_buffer("means", F.normalize(torch.randn(num_classes, dim), dim=1))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        loss, new_means = class_mean_loss(
            embeddings,
            labels,
            self.means,
            alpha=self.alpha,
            gamma=self.gamma,
            margin=self.margin,
            variant=self.variant,
            update=self.training,
            renormalize_means=self.renormalize_means,
        )
        if self.training:
            with torch.no_grad():
                self.means.copy_(new_means.detach())
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, alpha={self.alpha}, gamma={self.gamma}, "
            f"margin={self.margin}, renormalize_means={self.renormalize_means}"
        )


class ClassMeanLoss(WithinClassLoss):
    """L_e = L_w + L_b of Eq. (5) (the paper's loss), class means in the buffer ``means``; see
    :class:`WithinClassLoss` for how the means move."""

    variant = "full"


class DFFLoss(WithinClassLoss):
    """Deep Fisher Faces style: L_w + L_b with the hinge of Eq. (10) not squared (Table 5)."""

    variant = "dff"


class CenterLoss(WithinClassLoss):
    """Wen et al.'s center loss (ECCV 2016) on the raw embedding (Table 5); γ, m and the re-normalisation
    are not used."""

    variant = "center"


#: The recipe's ``loss.variant`` → its loss class (``none``: cross-entropy only, no class).
LOSSES: dict[str, type[WithinClassLoss]] = {
    "full": ClassMeanLoss,
    "within": WithinClassLoss,
    "center": CenterLoss,
    "dff": DFFLoss,
}
