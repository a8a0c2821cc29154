"""The class-mean loss, Eqs. (5)-(10), against computations written straight from the equations; every
variant of Table 5 through its class's ``compute_loss`` (the one place each variant is defined)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from elope import ClassMeanLoss, EmbeddingHead, EmbeddingLoss, class_mean_loss
from elope.nn.losses import LOSS_VARIANTS, LOSSES, WithinClassLoss

ALPHA, GAMMA, MARGIN = 0.5, 16.0, 0.75


def variant_loss(embeddings, labels, means, *, variant="full", update=True, **options):
    """``(loss, μ^t)`` of the class the recipe's ``loss.variant`` names, with ``means`` as μ^{t-1}: its
    ``compute_loss`` (training mode: update), on float32-or-wider inputs as ``forward`` gives them; the
    per-sample means μ^t_{c_n} it returns are written into the rows of the (C, dim) means, as ``forward``
    writes them into the buffer."""
    loss_fn = LOSSES[variant](means.shape[0], means.shape[1], **options).train(update)
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    loss, rows = loss_fn.compute_loss(embeddings.to(dtype), labels, means.to(dtype))
    return loss, means.to(dtype).index_put((labels,), rows)


def reference(
    embeddings, labels, means, alpha=ALPHA, gamma=GAMMA, margin=MARGIN, variant="full", update=True
):
    """Loops over classes, samples and pairs, one equation at a time (float64)."""
    n = len(labels)
    f = embeddings if variant == "center" else torch.stack([e / e.norm() for e in embeddings])
    new = [means[c].clone() for c in range(len(means))]
    if update:
        for c in range(len(means)):
            members = [i for i in range(n) if labels[i] == c]  # δ(c_n, c), Eq. (8)
            source = f.detach() if variant == "center" else f
            delta = sum((means[c] - source[i] for i in members), torch.zeros_like(means[c])) / (
                1 + len(members)
            )
            new[c] = means[c] - alpha * delta  # Eqs. (6)-(7)
    loss_means = means if variant == "center" else new
    lw = sum(((f[i] - loss_means[labels[i]]) ** 2).sum() for i in range(n)) / (2 * n)  # Eq. (9)
    lb = torch.zeros((), dtype=f.dtype)
    present = sorted(set(labels))
    pairs = list(itertools.combinations(present, 2))
    if variant in ("full", "dff") and pairs:
        for k, c in pairs:
            hinge = torch.clamp(margin - ((new[k] - new[c]) ** 2).sum(), min=0)
            lb = lb + (hinge**2 / 4 if variant == "full" else hinge / 2)
        lb = gamma * lb / len(pairs)  # Eq. (10), |P| = number of unordered pairs of distinct classes
    return lw + lb, torch.stack(new)


def test_hand_computed_two_samples():
    # μ0 = (1, 0), μ1 = (0, 1); e0 = (3, 4) -> f0 = (0.6, 0.8), e1 = (0, 2) -> f1 = (0, 1).
    # Δμ0 = (μ0 - f0) / 2 = (0.2, -0.4) -> μ0^t = (0.9, 0.2); Δμ1 = 0 -> μ1^t = (0, 1).
    # L_w = ((-0.3)² + 0.6² + 0) / 4 = 0.1125; ||μ0^t - μ1^t||² = 1.45; with m = 2: hinge 0.55,
    # L_b = 16 / 4 · 0.55² = 1.21.
    e = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    loss, new = variant_loss(e, labels, means, margin=2.0, variant="within")
    assert loss.item() == pytest.approx(0.1125, abs=1e-12)
    torch.testing.assert_close(new, torch.tensor([[0.9, 0.2], [0.0, 1.0]], dtype=torch.float64))
    loss, _ = class_mean_loss(e, labels, means, margin=2.0)
    assert loss.item() == pytest.approx(0.1125 + 1.21, abs=1e-12)
    loss, _ = class_mean_loss(e, labels, means, margin=0.75)  # 1.45 > m: the hinge is inactive
    assert loss.item() == pytest.approx(0.1125, abs=1e-12)
    loss, _ = variant_loss(e, labels, means, margin=2.0, variant="dff")  # 16 / 2 · 0.55
    assert loss.item() == pytest.approx(0.1125 + 4.4, abs=1e-12)


@pytest.mark.parametrize("variant", ["full", "within", "center", "dff"])
@pytest.mark.parametrize("update", [True, False])
def test_value_gradient_and_means_match_reference(variant, update):
    torch.manual_seed(0)
    num_classes, dim = 6, 5
    labels = torch.tensor([0, 2, 2, 5, 0, 2, 3])
    means = F.normalize(torch.randn(num_classes, dim, dtype=torch.float64), dim=1)
    e1 = torch.randn(len(labels), dim, dtype=torch.float64, requires_grad=True)
    e2 = e1.detach().clone().requires_grad_(True)
    # a margin that leaves some pairs inside and some outside the hinge
    loss, new = variant_loss(e1, labels, means, margin=1.5, variant=variant, update=update)
    ref_loss, ref_new = reference(e2, labels.tolist(), means, margin=1.5, variant=variant, update=update)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-10)
    torch.testing.assert_close(new.detach(), ref_new.detach(), rtol=0, atol=1e-10)
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(e1.grad, e2.grad, rtol=0, atol=1e-10)


def test_gradient_flows_through_updated_means():
    """Eq. (8) remark: the update ties μ^t to the batch; dropping that link changes the gradient."""
    labels = torch.tensor([0, 0, 1])
    means = F.normalize(torch.randn(2, 3, dtype=torch.float64), dim=1)
    e = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    loss, _ = variant_loss(e, labels, means, variant="within")
    (grad,) = torch.autograd.grad(loss, e)
    f = F.normalize(e, dim=1)
    _, detached_new = variant_loss(e.detach(), labels, means, variant="within")
    loss_no_link = 0.5 * (f - detached_new[labels]).pow(2).sum(1).mean()
    (grad_no_link,) = torch.autograd.grad(loss_no_link, e)
    assert not torch.allclose(grad, grad_no_link)


def test_gradcheck_full_loss():
    labels = torch.tensor([0, 1, 1, 2])
    means = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    e = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: class_mean_loss(x, labels, means, margin=2.0)[0], (e,))


def test_module_stores_means_in_training_and_not_in_eval():
    torch.manual_seed(1)
    loss_fn = ClassMeanLoss(4, 3)
    assert loss_fn.means.shape == (4, 3)
    torch.testing.assert_close(loss_fn.means.norm(dim=1), torch.ones(4))  # random, l2-normalised start
    start = loss_fn.means.clone()
    e, labels = torch.randn(5, 3), torch.tensor([0, 1, 1, 3, 0])
    _, expected = class_mean_loss(e, labels, start)
    loss_fn(e, labels)
    torch.testing.assert_close(loss_fn.means, expected)
    assert torch.equal(loss_fn.means[2], start[2])  # absent class untouched
    loss_fn.eval()
    kept = loss_fn.means.clone()
    value = loss_fn(e, labels)
    assert torch.equal(loss_fn.means, kept)
    ref, _ = class_mean_loss(e, labels, kept, update=False)
    torch.testing.assert_close(value, ref)
    assert "means" in loss_fn.state_dict()


def test_between_class_loss_zero_with_one_class_and_renormalisation():
    means = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    e = torch.randn(3, 4, dtype=torch.float64)
    labels = torch.tensor([1, 1, 1])
    full, _ = class_mean_loss(e, labels, means, margin=4.0)
    within, _ = variant_loss(e, labels, means, margin=4.0, variant="within")
    torch.testing.assert_close(full, within)  # |P| = 0 -> L_b = 0
    _, renormalised = class_mean_loss(e, labels, means, renormalize_means=True)
    torch.testing.assert_close(renormalised.norm(dim=1), torch.ones(3, dtype=torch.float64))


def test_float32_loss_under_half_precision_inputs():
    means = F.normalize(torch.randn(3, 8), dim=1)
    loss, _ = class_mean_loss(torch.randn(4, 8).bfloat16(), torch.tensor([0, 1, 2, 0]), means)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"alpha": 2.0}, "alpha"), ({"num_classes": 0}, "positive")],
)
def test_invalid_arguments(kwargs, message):
    args = {"num_classes": 3, "dim": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        ClassMeanLoss(**args)


def test_one_base_class_no_variant_table():
    """Every loss subclasses EmbeddingLoss and overrides compute_loss; the paper's loss does not subclass
    an ablation's; LOSSES (the recipe's names) is the only lookup by name."""
    assert LOSS_VARIANTS == ("full", "within", "center", "dff")
    for cls in LOSSES.values():
        assert cls.__bases__ == (EmbeddingLoss,) and "compute_loss" in vars(cls)
    assert not issubclass(ClassMeanLoss, WithinClassLoss)
    with pytest.raises(NotImplementedError):
        EmbeddingLoss(3, 4)(torch.randn(2, 4), torch.tensor([0, 1]))
    e, labels, means = torch.randn(5, 4), torch.tensor([0, 1, 1, 2, 0]), F.normalize(torch.randn(3, 4), dim=1)
    torch.testing.assert_close(
        variant_loss(e, labels, means, margin=1.5, renormalize_means=True),
        class_mean_loss(e, labels, means, margin=1.5, renormalize_means=True),
    )  # the plain function is the paper's loss


@pytest.mark.parametrize("variant", LOSS_VARIANTS)
def test_each_loss_class_stores_its_means_in_training_only(variant):
    """forward computes compute_loss on the buffer's means, stores μ^t in training mode, reads the means
    only in eval mode."""
    torch.manual_seed(0)
    loss_fn = LOSSES[variant](3, 4, margin=1.5, renormalize_means=True)
    means = loss_fn.means.clone()
    e, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 2, 2, 1])
    expected, new = variant_loss(e, labels, means, margin=1.5, variant=variant, renormalize_means=True)
    torch.testing.assert_close(loss_fn(e, labels), expected)
    torch.testing.assert_close(loss_fn.means, new)
    loss_fn.eval()
    loss_fn(e, labels)
    torch.testing.assert_close(loss_fn.means, new)


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"outside \[0, 2\] \(got 0..3\)"):
        class_mean_loss(torch.randn(2, 4), torch.tensor([0, 3]), torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
        ClassMeanLoss(3, 4)(torch.randn(2, 4), torch.tensor([-1, 0]))


def test_embedding_head_layers():
    head = EmbeddingHead(16, 8)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "PReLU"]
    out = head(torch.randn(4, 16))
    assert out.shape == (4, 8)
    assert not torch.allclose(out.norm(dim=1), torch.ones(4))  # the classifier reads it un-normalised


@pytest.mark.parametrize("variant", ["full", "dff", "within", "center"])
def test_loss_never_reads_values_back_to_the_host(variant):
    # Meta tensors have shapes but no values: any .item(), int(), torch.unique or bincount on them raises,
    # as a host synchronisation would stall a GPU step. The loss must get through on shapes alone.
    e, m = torch.randn(6, 8, device="meta"), torch.randn(4, 8, device="meta")
    labels = torch.zeros(6, dtype=torch.long, device="meta")
    loss, means = variant_loss(e, labels, m, variant=variant)
    assert loss.shape == () and means.shape == (4, 8)
