"""Passes that train nothing show a progress bar too (issue 27: the validation pass and the check at the
end of stage 2 were silent for minutes on a CPU, so a loaded machine looked hung): on standard error, on
a terminal, with ``train.progress``."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from elope.config import load_config
from elope.engine.distributed import DistInfo
from elope.engine.plan import LoaderSettings, StagePlan
from elope.engine.validate import evaluate_split
from elope.nn.model import ELoPE
from elope.spec import ModelSpec


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plan(progress: bool) -> StagePlan:
    return StagePlan(
        stage="classifier",
        settings=load_config("synthetic").stages.classifier.model_copy(update={"batch_size": 2}),
        crops=False,
        input_size=64,
        steps=1,
        device=torch.device("cpu"),
        amp=None,
        channels_last=False,
        loss_weight=2.0,
        heatmap_target="raw",
        checkpoint_every=0,
        progress=progress,
        loader=LoaderSettings(seed=0, workers=0, pin_memory=False, rank=0, world_size=1),
    )


@pytest.mark.parametrize("progress", [True, False])
def test_validation_pass_shows_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, progress: bool) -> None:
    torch.manual_seed(0)
    model = ELoPE("resnet18", 2, embedding_dim=4, k=2, localizer=False, spec=ModelSpec(image_size=64))
    data = [(torch.rand(3, 64, 64), i % 2, torch.full((4,), float("nan"))) for i in range(4)]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = evaluate_split(model, data, _plan(progress), DistInfo())
    assert 0.0 <= result["top1"] <= 1.0
    assert ("[classifier] validation" in terminal.getvalue()) == progress, terminal.getvalue()
