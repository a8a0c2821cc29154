"""DataLoader workers are capped at the cores there are (issue 27: the paper's recipes ask for 4, and on a
2-core machine every loader warned that it oversubscribes the CPU)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from elope.data.workers import available_cores, usable_workers
from elope.engine.loop import make_loader
from elope.engine.plan import LoaderSettings


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-core machine, as both elope and PyTorch's DataLoader count cores."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_usable_workers_caps_at_the_cores(two_cores: None) -> None:
    assert available_cores() == 2
    assert [usable_workers(n) for n in (0, 1, 2, 4, 16)] == [0, 1, 2, 2, 2]


def test_training_loader_of_four_workers_is_quiet_on_two_cores(two_cores: None) -> None:
    settings = LoaderSettings(seed=0, workers=4, pin_memory=False, rank=0, world_size=1)
    dataset = [(torch.zeros(3), 0, torch.zeros(4))] * 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = make_loader(dataset, 4, settings, epoch=0, shuffle=True)
    assert loader.num_workers == 2
