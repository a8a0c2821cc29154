"""torch.compile over the one-pass pipeline (elope.deploy.compiled; `predict/evaluate --compile`): the compiled
copy gives the same predictions as the eager model (Fig. 1: localize → box → crop → classify)."""

from __future__ import annotations

import shutil

import pytest
import torch
from click.testing import CliRunner

from elope.cli import main
from elope.deploy.compiled import compile_model
from elope.nn.model import ELoPE
from elope.spec import ModelSpec


def _model() -> ELoPE:
    torch.manual_seed(0)
    model = ELoPE("resnet18", 4, embedding_dim=8, k=2, spec=ModelSpec(image_size=64, tau=0.3)).eval()
    with torch.no_grad():  # a localized heatmap (one stem channel): boxes other than the whole image
        model.localizer.head.weight.zero_()
        model.localizer.head.weight[0, 0, 1, 1] = 1.0
    return model


def _assert_same(model: ELoPE, fast: ELoPE, images: torch.Tensor) -> None:
    expected, got = model.predict(images, top=4), fast.predict(images, top=4)
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.classes[:, 0], expected.classes[:, 0])
    torch.testing.assert_close(got.boxes, expected.boxes, rtol=0, atol=0.5)
    torch.testing.assert_close(got.heatmaps, expected.heatmaps, rtol=1e-4, atol=1e-4)


def test_compiled_equals_eager_aot_eager() -> None:
    """backend="aot_eager": dynamo + AOT autograd tracing without code generation (fast, no compiler)."""
    model = _model()
    fast = compile_model(model, backend="aot_eager")
    assert fast is not model and fast.compile_mode == "aot_eager:default"
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    _assert_same(model, fast, images)
    # crop and forward apart, as `elope evaluate` calls them (embeddings for the nearest class mean)
    crops, boxes, _ = fast.crop(images)
    expected_crops, expected_boxes, _ = model.crop(images)
    torch.testing.assert_close(boxes, expected_boxes, rtol=0, atol=0.5)
    torch.testing.assert_close(crops, expected_crops, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        logits, emb = fast(crops, return_embeddings=True)
        expected_logits, expected_emb = model(expected_crops, return_embeddings=True)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(emb, expected_emb, rtol=1e-4, atol=1e-4)
    assert all(not m.training for m in model.modules()) and model.forward != fast.forward


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("cc") is None, reason="inductor needs a C++ compiler"
)
def test_compiled_equals_eager_inductor() -> None:
    """The real thing on the CPU: inductor code generation (about a minute on 2 cores)."""
    model = _model()
    _assert_same(
        model, compile_model(model), torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    )


def test_compile_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown compile mode"):
        compile_model(_model(), "fastest")
    for command in ("predict", "evaluate"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--compile" in result.output and "reduce-overhead" in result.output
