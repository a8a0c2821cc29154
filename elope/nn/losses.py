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

The ablation variants of Table 5 are subclasses of one base, :class:`EmbeddingLoss` (the class means in
a buffer, the checks, the update of the buffer), each overriding :meth:`EmbeddingLoss.compute_loss` (the
shape of pytorch-metric-learning's losses); the recipe picks one by its ``loss.variant`` name in
:data:`LOSSES`, the one table of names:

* ``"full"``   :class:`ClassMeanLoss`: L_w + L_b as above (the paper's loss; :func:`class_mean_loss` is
  the same as a plain function).
* ``"within"`` :class:`WithinClassLoss`: L_w only.
* ``"center"`` :class:`CenterLoss`: the original center loss of Wen et al. (ECCV 2016): no l2-normalisation, the loss
  1/(2N) Σ ||x_n - c_{y_n}||² uses the means *before* the update, and no gradient flows through the
  update (the means are updated from detached features with the same rule, Eqs. 6-7).
* ``"dff"``    :class:`DFFLoss`: Deep Fisher Faces style (BMVC 2017): L_w + L_b with the hinge not squared,
  L_b = γ/(2|P|) Σ max(m - ||μ_k^t - μ_c^t||², 0), whose gradient is Eq. (12) without the factor d.
  Unlike the original DFF, P holds all pairs of the batch, not a sample (as the paper does, Sec. 4.2).

``renormalize_means=True`` l2-normalises μ^t after each update (the authors' Torch7 release does this; the
paper does not mention it), both in the loss and in what is stored. Off by default. Only the means of the
classes in the batch are re-normalised: a class absent from a batch keeps its mean bit for bit, whatever the
sampler (they are unit vectors already, so this differs from re-normalising all of them by rounding only).

In training mode a loss module stores μ^t (detached) in its buffer ``means``; in eval mode the buffer is left
unchanged and the loss is computed with it as is.

Scale (issue 29): a step touches only the classes of the batch. The update and both terms are computed in
"slot" space (:func:`update_batch_means`: one row per sample, the class's first sample holding its mean), so
time and memory are O(N² + N·dim) whatever C, and the results equal the C-row computation bit for bit (the
same sums in the same order; ``tests/test_nn_losses_scale.py``). At C = 10,000, dim 512 the loss adds no
C-sized tensor to the graph (``benchmarks/classes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "LOSS_VARIANTS",
    "CenterLoss",
    "ClassMeanLoss",
    "DFFLoss",
    "EmbeddingLoss",
    "WithinClassLoss",
    "batch_slots",
    "between_class_loss",
    "check_embeddings",
    "check_label_range",
    "class_mean_loss",
    "update_batch_means",
    "update_class_means",
    "within_class_loss",
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


def batch_slots(labels: Tensor) -> Tensor:
    """For each sample n the index of the first sample of the batch with the same class, (N,).

    The classes of a batch in a space of N "slots" (slot j stands for the class of sample j where j is its
    first sample): the mean update and L_b then touch N rows, not C, with the same sums in the same order.
    Computed on the device (no read-back, no host synchronisation)."""
    same = (labels[:, None] == labels[None, :]).to(torch.uint8)
    return same.argmax(dim=1)  # the first maximum: the first sample of the class


def update_batch_means(
    features: Tensor, labels: Tensor, means: Tensor, alpha: float
) -> tuple[Tensor, Tensor]:
    """Eqs. (6)-(7) for the classes of the batch only: ``(slot_means, slots)`` with ``slot_means`` (N, dim)
    and ``slot_means[slots]`` = μ^t_{c_n} (rows of :func:`update_class_means`, bit for bit; a slot that is
    no class's first sample holds an unused row). Time and memory O(N² + N·dim) whatever the number of
    classes C (the full update is O(C·dim) forward and backward: 10,000 classes × 512 = 20 MB a tensor)."""
    slots = batch_slots(labels)
    slot_means = means[labels]  # slot j: the mean of the class of sample j
    updated = update_class_means(features, slots, slot_means, alpha)
    return updated, slots


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


def check_label_range(labels: Tensor, num_classes: int) -> None:
    """Labels must index one of ``num_classes`` classes (ValueError naming the range otherwise).

    Reads the labels' extremes, so call it on CPU tensors (the loader's): on an accelerator it would stall
    every step. The one label check of the package (training calls it on every batch).
    """
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"a label lies outside [0, {num_classes - 1}] (got {int(labels.min())}..{int(labels.max())})"
        )


def check_embeddings(embeddings: Tensor, labels: Tensor, num_classes: int) -> None:
    """Shapes (N, dim) and (N,); on the CPU also the label range (:func:`check_label_range`; on an
    accelerator an out-of-range label fails in the scatter of the mean update instead)."""
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings (N, dim) and labels (N,), got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if labels.device.type == "cpu":
        check_label_range(labels, num_classes)


def within_class_loss(f: Tensor, labels: Tensor, means: Tensor) -> Tensor:
    """L_w = 1/(2N) Σ_n ||f(x_n) - μ_{c_n}||², Eq. (9) (``means``: μ^t, or the centers of Wen et al.)."""
    return 0.5 * (f - means[labels]).pow(2).sum(dim=1).mean()


def _normalised_update(
    x: Tensor, labels: Tensor, means: Tensor, alpha: float, update: bool, renormalize: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """f(x_n) (l2-normalised), μ^t of the batch's classes in slot space and the slots
    (:func:`update_batch_means`; Eqs. 6-7 when ``update``, optionally re-normalised)."""
    f = F.normalize(x, dim=1)
    if not update:
        return f, means[labels], batch_slots(labels)
    slot_means, slots = update_batch_means(f, labels, means, alpha)
    if renormalize:  # only the classes of the batch: an absent class keeps its mean bit for bit
        slot_means = F.normalize(slot_means, dim=1)
    return f, slot_means, slots


def _class_mean_terms(
    x: Tensor, labels: Tensor, means: Tensor, hyper: EmbeddingLoss | _Hyper, update: bool, squared: bool
) -> tuple[Tensor, Tensor]:
    """L_w + L_b with the updated means, Eqs. (5)-(10) (``squared=False``: the DFF form of L_b), and
    μ^t_{c_n} per sample (N, dim). Computed in slot space (:func:`update_batch_means`): L_b over the slots
    equals L_b over the classes (a pair of slots is a pair of classes)."""
    f, slot_means, slots = _normalised_update(x, labels, means, hyper.alpha, update, hyper.renormalize_means)
    loss = within_class_loss(f, slots, slot_means)
    loss = loss + between_class_loss(slot_means, slots, hyper.gamma, hyper.margin, squared=squared)
    return loss, slot_means[slots]


@dataclass(frozen=True)
class _Hyper:
    """The hyper-parameters of :func:`class_mean_loss`: α of Eq. (6), γ and m of Eq. (10), the
    re-normalisation of the authors' release."""

    alpha: float
    gamma: float
    margin: float
    renormalize_means: bool


def _as_float32(embeddings: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
    """Embeddings and means in float32 or wider (the losses run in float32 under autocast)."""
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    return embeddings.to(dtype), means.to(dtype)


def class_mean_loss(
    embeddings: Tensor,
    labels: Tensor,
    means: Tensor,
    *,
    alpha: float = 0.5,
    gamma: float = 16.0,
    margin: float = 0.75,
    update: bool = True,
    renormalize_means: bool = False,
) -> tuple[Tensor, Tensor]:
    """The paper's embedding loss L_e = L_w + L_b, Eqs. (5)-(10), as a plain function
    (:class:`ClassMeanLoss` keeps the means in a buffer).

    Args:
        embeddings: (N, dim) raw output of the embedding layer (l2-normalised here).
        labels: (N,) class indices in [0, C).
        means: (C, dim) class means μ^{t-1}.
        alpha: α of Eq. (6) (Table 2: 0.5).
        gamma: γ of Eq. (10) (Table 2: 16).
        margin: m of Eq. (10) (Table 2: 0.75).
        update: compute μ^t from the batch (training). If False the means are used as they are.
        renormalize_means: l2-normalise μ^t after the update (authors' release; not in the paper).

    Returns:
        ``(loss, new_means)``: the scalar loss (float32 or wider) and μ^t (C, dim), still attached to the
        graph (the loss itself touches only the batch's classes; this function alone builds the C rows).
    """
    check_embeddings(embeddings, labels, means.shape[0])
    x, means = _as_float32(embeddings, means)
    hyper = _Hyper(alpha, gamma, margin, renormalize_means)
    loss, rows = _class_mean_terms(x, labels, means, hyper, update, squared=True)
    return loss, (means.index_put((labels,), rows) if update else means)


class EmbeddingLoss(nn.Module):
    """The base of the embedding losses L_e (Sec. 4): class means in the buffer ``means`` (num_classes,
    dim), updated from each training batch; subclasses say what the loss is in :meth:`compute_loss`.

    The means start as random l2-normalised vectors (seeded by the global torch RNG). In training mode a
    call computes μ^t from the buffer and the batch, uses it in the loss (with gradient flowing back to the
    embeddings where the variant says so), and then stores it detached. In eval mode the buffer is read
    only.

    For multi-process training, call it on the embeddings and labels gathered from all processes
    (``elope.engine.distributed``) so every process stores the same means.
    """

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

    def compute_loss(self, x: Tensor, labels: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, μ^t_{c_n})`` for embeddings ``x`` (N, dim), float32 or wider, and the means μ^{t-1}
        (``means``, not the buffer: this computes, it stores nothing): the updated mean of each sample's
        class, (N, dim), which :meth:`forward` writes into the buffer's rows (only the batch's classes
        change: the step costs O(N·dim), not O(C·dim)); ``means[labels]`` in eval mode (``self.training``
        False)."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        check_embeddings(embeddings, labels, self.num_classes)
        x, means = _as_float32(embeddings, self.means)
        loss, rows = self.compute_loss(x, labels, means)
        if self.training:  # only the batch's classes change (a class's rows all hold the same μ^t)
            with torch.no_grad():
                self.means.index_copy_(0, labels, rows.detach().to(self.means.dtype))
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, alpha={self.alpha}, gamma={self.gamma}, "
            f"margin={self.margin}, renormalize_means={self.renormalize_means}"
        )


class ClassMeanLoss(EmbeddingLoss):
    """The paper's loss L_e = L_w + L_b, Eqs. (5)-(10), on the l2-normalised embedding, with the updated
    means μ^t in both terms and gradient through them (the functional dependence noted under Eq. 8)."""

    def compute_loss(self, x: Tensor, labels: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        return _class_mean_terms(x, labels, means, self, self.training, squared=True)


class WithinClassLoss(EmbeddingLoss):
    """L_w of Eq. (9) alone, with the updated means (Table 5)."""

    def compute_loss(self, x: Tensor, labels: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        f, slot_means, slots = _normalised_update(
            x, labels, means, self.alpha, self.training, self.renormalize_means
        )
        return within_class_loss(f, slots, slot_means), slot_means[slots]


class DFFLoss(EmbeddingLoss):
    """Deep Fisher Faces style: L_w + L_b with the hinge of Eq. (10) not squared (Table 5)."""

    def compute_loss(self, x: Tensor, labels: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        return _class_mean_terms(x, labels, means, self, self.training, squared=False)


class CenterLoss(EmbeddingLoss):
    """Wen et al.'s center loss (ECCV 2016) on the raw embedding (Table 5): the loss sees the current
    centers, which then move outside the graph, from detached features (Eqs. 6-7); γ, m and the
    re-normalisation are not used."""

    def compute_loss(self, x: Tensor, labels: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        loss = within_class_loss(x, labels, means)
        if not self.training:
            return loss, means[labels]
        slot_means, slots = update_batch_means(x.detach(), labels, means, self.alpha)
        return loss, slot_means[slots]


#: The recipe's ``loss.variant`` → its loss class (``none``: cross-entropy only, no class).
LOSSES: dict[str, type[EmbeddingLoss]] = {
    "full": ClassMeanLoss,
    "within": WithinClassLoss,
    "center": CenterLoss,
    "dff": DFFLoss,
}
LOSS_VARIANTS = tuple(LOSSES)
