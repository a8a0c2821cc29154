"""Issue 29 item 3: the class-mean losses at 10,000 classes. A training step touches only the classes of
the batch (slot space, ``elope.nn.losses.update_batch_means``) and gives the same loss, gradient and stored
means, bit for bit, as the former computation over all C rows (kept here as the reference)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from elope.nn.losses import (
    LOSSES,
    _one_hot,
    between_class_loss,
    update_class_means,
    within_class_loss,
)


def _all_rows_loss(x, labels, means, loss_fn):
    """The former computation: μ^t for all C classes (C, dim) in the graph, L_w and L_b read from it."""
    if loss_fn.__class__.__name__ == "CenterLoss":
        return within_class_loss(x, labels, means), update_class_means(
            x.detach(), labels, means, loss_fn.alpha
        )
    f = F.normalize(x, dim=1)
    new = update_class_means(f, labels, means, loss_fn.alpha)
    if loss_fn.renormalize_means:
        present = _one_hot(labels, means.shape[0], f.dtype).sum(dim=0)[:, None] > 0
        new = torch.where(present, F.normalize(new, dim=1), new)
    loss = within_class_loss(f, labels, new)
    if loss_fn.__class__.__name__ != "WithinClassLoss":
        squared = loss_fn.__class__.__name__ == "ClassMeanLoss"
        loss = loss + between_class_loss(new, labels, loss_fn.gamma, loss_fn.margin, squared=squared)
    return loss, new


def _case(seed: int, n: int, c: int, dim: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, min(c, max(2, n // 3)), (n,), generator=g) * (c // max(2, n // 3))
    means = F.normalize(torch.randn(c, dim, generator=g), dim=1)
    return torch.randn(n, dim, generator=g), labels.clamp(max=c - 1), means


@pytest.mark.parametrize("variant", list(LOSSES))
@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize(("n", "c", "dim"), [(2, 3, 4), (14, 200, 64), (32, 1000, 512), (57, 50, 33)])
def test_batch_classes_only_equal_the_all_rows_computation_bit_for_bit(variant, renormalize, n, c, dim):
    x, labels, means = _case(n * 7 + c, n, c, dim)
    module = LOSSES[variant](c, dim, margin=1.5, renormalize_means=renormalize).train()
    module.means.copy_(means)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss = module(x1, labels)
    loss.backward()
    ref_loss, ref_means = _all_rows_loss(x2, labels, means, module)
    ref_loss.backward()
    assert torch.equal(loss, ref_loss)
    assert torch.equal(x1.grad, x2.grad)
    assert torch.equal(module.means, ref_means.detach())


def _saved_numels(c: int, dim: int = 512, n: int = 32) -> int:
    """The largest tensor the autograd graph of one ClassMeanLoss call saves, at C classes."""
    x, labels, _ = _case(0, n, c, dim)
    module = LOSSES["full"](c, dim).train()
    sizes: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        module(x.requires_grad_(True), labels).backward()
    return max(sizes)


def test_the_graph_holds_no_tensor_that_grows_with_the_classes():
    """At C = 10,000, dim 512, batch 32 the largest saved tensor is batch-sized (the former update saved
    the (N, C) one-hot and (C, dim) means: 5.1 M floats)."""
    assert _saved_numels(10_000) == _saved_numels(200) <= 32 * 512
