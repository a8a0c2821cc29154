"""Batch-norm folding for inference (elope.deploy.fuse): the localization module of Sec. 5 (stem + first stage
at 64 px, Fig. 1) without its batch norms, equal to the unfolded module in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elope.deploy.fuse import fold_batch_norms, fold_batch_norms_, fold_model
from elope.nn.model import ELoPE
from elope.spec import ModelSpec


def _randomise_batch_norms(model: nn.Module) -> None:
    """Non-trivial statistics and affine parameters, so folding has something to get wrong."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(n, generator=generator) - 0.5)


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_folded_localizer_equals_unfolded(backbone: str) -> None:
    torch.manual_seed(0)
    model = ELoPE(backbone, 3, embedding_dim=8, spec=ModelSpec(image_size=64)).eval()
    _randomise_batch_norms(model)
    images = torch.randn(2, 3, 96, 80)
    folded = fold_batch_norms(model.localizer)
    assert _count(folded, nn.BatchNorm2d) == 0 and _count(model.localizer, nn.BatchNorm2d) > 0
    with torch.no_grad():
        expected, got = model.localizer(images), folded(images)
    assert got.shape == expected.shape == (2, 1, 14, 14)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fold_model_predicts_the_same_and_leaves_the_original() -> None:
    torch.manual_seed(0)
    model = ELoPE("resnet18", 4, embedding_dim=8, k=2, spec=ModelSpec(image_size=64)).eval()
    _randomise_batch_norms(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(3, 3, 96, 96)
    folded = fold_model(model)
    assert _count(folded, nn.BatchNorm2d) == 0
    assert _count(folded, nn.BatchNorm1d) == 1  # the embedding layer's batch norm follows a Linear: kept
    expected, got = model.predict(images, top=4), folded.predict(images, top=4)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.classes, expected.classes) and torch.equal(got.boxes, expected.boxes)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fold_refuses_training_mode() -> None:
    stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms_(stem)
    assert fold_batch_norms_(stem.eval()) == 1 and isinstance(stem[1], nn.Identity)
