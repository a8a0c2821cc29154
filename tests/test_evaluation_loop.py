"""The one evaluation loop (issue 27 item 2): ``elope.evaluation.loop.iterate`` over a ``Predictor``, and
``ModelPredictor`` giving each pipeline exactly what the model's own methods give."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from elope.evaluation.loop import iterate
from elope.evaluation.model_predictor import ModelPredictor
from elope.evaluation.outputs import BatchOutputs, Want
from elope.evaluation.predictor import Predictor
from elope.nn.model import ELoPE
from elope.spec import ModelSpec


class _Counting:
    """A predictor that records what it was given: prepared batches, in order."""

    spec = ModelSpec(image_size=32)
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.classes = ["a", "b"]
        self.prepared: list[Tensor] = []
        self.asked: list[Want] = []

    def predict(self, images: Tensor, top: int = 1) -> Any:
        raise AssertionError("a pass asks predict_batch")

    def prepare(self, images: Tensor) -> Tensor:
        self.prepared.append(images)
        return images + 1.0

    def predict_batch(self, images: Tensor, want: Want) -> BatchOutputs:
        self.asked.append(want)
        return BatchOutputs(predictions=images[:, 0, 0, 0].long())


def test_iterate_prepares_each_batch_once_and_keeps_the_rest_of_it():
    predictor = _Counting()
    assert isinstance(predictor, Predictor)
    batches = [
        (torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), "extra"),
        (None, torch.empty(0), "all unreadable"),
        (torch.full((1, 3, 4, 4), 2.0), torch.tensor([1]), "last"),
    ]
    want = Want(top=0)
    seen = list(iterate(predictor, batches, want))
    assert len(predictor.prepared) == 2 and predictor.asked == [want, want]
    (first, out1), (skipped, none), (last, out3) = seen
    assert torch.equal(first[0], torch.ones(2, 3, 4, 4)) and first[2] == "extra"  # the prepared images
    assert out1 is not None and out1.predictions.tolist() == [1, 1]
    assert none is None and skipped[2] == "all unreadable"
    assert out3 is not None and out3.predictions.tolist() == [3] and last[2] == "last"


def test_want_refuses_an_unknown_pipeline():
    with pytest.raises(ValueError, match="unknown pipeline 'crop'"):
        Want(pipeline="crop")


@pytest.fixture(scope="module")
def model() -> ELoPE:
    torch.manual_seed(0)
    spec = ModelSpec(image_size=64, crop_source=96)
    return ELoPE("resnet18", 3, spec, embedding_dim=8, k=2).eval()


def test_model_predictor_pipelines_are_the_models_own_calls(model: ELoPE):
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    predictor = ModelPredictor(model, ["a", "b", "c"])
    crops = predictor.predict_batch(images, Want(top=2, embeddings=True))
    reference = model.predict(images, top=2)
    assert torch.equal(crops.top_classes, reference.classes) and torch.equal(crops.boxes, reference.boxes)
    assert torch.allclose(crops.top_scores, reference.scores)
    _, embeddings = model(model.crop(images)[0], return_embeddings=True)
    assert crops.embeddings is not None and torch.allclose(crops.embeddings, embeddings)
    maps = predictor.predict_batch(images, Want(pipeline="heatmaps", top=0))
    boxes, heatmaps = model.localize(images)
    assert torch.equal(maps.heatmaps, heatmaps) and torch.equal(maps.boxes, boxes) and maps.logits is None
    whole = predictor.predict_batch(images, Want(pipeline="whole", top=0))
    assert torch.equal(whole.logits, model(images)) and whole.predictions is None
