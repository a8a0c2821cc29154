"""Global k-max pooling, Eqs. (2)-(4)."""

import pytest
import torch

from elope import GlobalKMaxPool2d, global_kmax_pool


def test_hand_computed_example():
    # one feature map with values 0..8; the 3 largest are 8, 7, 6 -> mean 7 (Eq. 3)
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert global_kmax_pool(x, 3).item() == pytest.approx(7.0)
    # Eq. (4) with w = (1, 2, 3): (8·1 + 7·2 + 6·3) / 3 = 40 / 3
    w = torch.tensor([1.0, 2.0, 3.0])
    assert global_kmax_pool(x, 3, w).item() == pytest.approx(40.0 / 3.0)


def test_shapes_and_identities():
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    assert global_kmax_pool(x, 4).shape == (2, 5)
    torch.testing.assert_close(global_kmax_pool(x, 1), x.amax(dim=(2, 3)))  # K = 1 is GMP
    torch.testing.assert_close(global_kmax_pool(x, 24), x.mean(dim=(2, 3)))  # K = I·J is GAP
    torch.testing.assert_close(global_kmax_pool(x, 24, torch.ones(24, dtype=x.dtype)), x.mean(dim=(2, 3)))


def test_matches_sort_definition():
    x = torch.randn(3, 7, 5, 5, dtype=torch.float64)
    s = x.flatten(2).sort(dim=2, descending=True).values  # S_d, Eq. (2)
    w = torch.rand(4, dtype=torch.float64)
    torch.testing.assert_close(global_kmax_pool(x, 4), s[..., :4].mean(dim=2))
    torch.testing.assert_close(global_kmax_pool(x, 4, w), (s[..., :4] * w).sum(dim=2) / 4)


@pytest.mark.parametrize("k", [0, -1, 26])
def test_invalid_k_names_both_numbers(k):
    with pytest.raises(ValueError, match=rf"k={k}.*H·W=25"):
        global_kmax_pool(torch.randn(1, 2, 5, 5), k)


def test_module_weights_parameter_and_gradient():
    pool = GlobalKMaxPool2d(k=2, weighted=True)
    assert isinstance(pool.weights, torch.nn.Parameter)
    assert torch.equal(pool.weights.data, torch.ones(2))
    x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]])  # S = 5, 3, 2, 1
    pool(x).sum().backward()
    # d/dw_k of (w_1·5 + w_2·3)/2 is S_k / K
    torch.testing.assert_close(pool.weights.grad, torch.tensor([2.5, 1.5]))


def test_enable_weights_keeps_output_and_gradient_reaches_input():
    pool = GlobalKMaxPool2d(k=4)
    assert pool.weights is None and not pool.weighted
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    before = pool(x)
    pool.enable_weights()
    assert pool.weighted and pool.weights.shape == (4,)
    torch.testing.assert_close(pool(x), before)
    pool(x).sum().backward()
    # each map passes gradient 1/K to exactly its K maxima
    assert torch.equal((x.grad != 0).flatten(2).sum(dim=2), torch.full((2, 3), 4))


def test_gradcheck():
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: global_kmax_pool(a, 3, b), (x, w))
