"""Pieces of training that need no model: data order, checkpoints, stage planning, NaN guard."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from elope.engine.distributed import DistInfo
from elope.engine.sampling import EpochSampler, SeededItems
from elope.engine.stage_state import StageState
from elope.engine.stages import plan_stages
from elope.engine.steps import check_finite
from elope.engine.validate import selection_score
from elope.failures import TrainingError
from elope.runs.checkpoint import (
    CheckpointError,
    atomic_save,
    check_model_config,
    load_checkpoint,
    load_state_strict,
    rng_state,
    set_rng_state,
)


# ----------------------------------------------------------------------------------------- data order
def _batches(sampler: EpochSampler) -> list[list[int]]:
    items = [i for _, i in sampler]
    b = sampler.local_batch
    return [items[k : k + b] for k in range(0, len(items), b)]


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = EpochSampler(50, 8, seed=3, epoch=2).indices()
    assert a == EpochSampler(50, 8, seed=3, epoch=2).indices()
    assert a != EpochSampler(50, 8, seed=3, epoch=3).indices()
    assert len(a) == 48 and len(set(a)) == 48  # incomplete last global batch dropped


@pytest.mark.parametrize("world", [2, 4])
def test_processes_split_each_global_batch_in_rank_order(world):
    """Concatenating the ranks' local batches of one step gives the single-process batch of that step."""
    single = _batches(EpochSampler(53, 8, seed=1, epoch=0))
    ranks = [_batches(EpochSampler(53, 8, seed=1, epoch=0, rank=r, world_size=world)) for r in range(world)]
    assert all(len(r) == len(single) for r in ranks)
    for step, batch in enumerate(single):
        assert [i for r in ranks for i in r[step]] == batch


def test_skip_resumes_inside_an_epoch():
    full = _batches(EpochSampler(40, 8, seed=0, epoch=1))
    rest = _batches(EpochSampler(40, 8, seed=0, epoch=1, skip_batches=2))
    assert rest == full[2:]
    assert len(EpochSampler(40, 8, seed=0, epoch=1, skip_batches=2)) == 24


def test_eval_order_covers_every_item_once():
    ranks = [EpochSampler(11, 4, rank=r, world_size=3, shuffle=False).indices() for r in range(3)]
    assert sorted(i for r in ranks for i in r) == list(range(11))
    with pytest.raises(ValueError, match="not divisible"):
        EpochSampler(11, 5, world_size=2)


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(2), random.random(), float(np.random.rand())


def test_augmentation_depends_on_seed_epoch_index_and_leaves_global_rng_alone():
    items = SeededItems(_RandomItems(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = items[(1, 3)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)  # whatever ran before must not matter
    again = items[(1, 3)]
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
    assert not torch.equal(items[(2, 3)][0], first[0])
    assert not torch.equal(items[(1, 4)][0], first[0])


# ---------------------------------------------------------------------------------------- checkpoints
def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"format": "elope-checkpoint-1", "x": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"format": "elope-checkpoint-1", "x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_load_checkpoint_is_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "elope-checkpoint-1", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match=r"refused to load checkpoint .*will not be loaded") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)  # never PyTorch's advice to load it unsafely
    torch.save({"x": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an elope training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    atomic_save({"format": "elope-checkpoint-1", "rng": rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(1))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_another_architecture_is_refused_with_the_differences_named():
    saved = {"backbone": "resnet50", "num_classes": 200, "embedding_dim": 512}
    check_model_config(saved, dict(saved), "x.pt")
    with pytest.raises(CheckpointError) as info:
        check_model_config(saved, {**saved, "backbone": "resnet18"}, "x.pt")
    assert "another model architecture" in str(info.value) and "'resnet50'" in str(info.value)
    net = torch.nn.Linear(3, 2)
    with pytest.raises(
        CheckpointError, match=r"the model does not fit this model: (?s:.*)size mismatch for weight"
    ):
        load_state_strict(net, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "the model")
    with pytest.raises(CheckpointError, match=r"Missing key\(s\) in state_dict: \"bias\""):
        load_state_strict(net, {"weight": torch.zeros(2, 3)}, "the model")


# ------------------------------------------------------------------------------------ stages and guard
def test_stage_plan_checks_prerequisites_and_order():
    assert plan_stages([], ["classifier", "localizer", "crop", "weighted"], None) == [
        "classifier",
        "localizer",
        "crop",
        "weighted",
    ]
    assert plan_stages(["classifier"], ["classifier", "localizer", "crop"], None) == ["localizer", "crop"]
    assert plan_stages(["classifier"], ["classifier"], "localizer") == [
        "localizer"
    ]  # finish what was interrupted
    assert plan_stages([], ["classifier", "weighted"], None) == ["classifier", "weighted"]
    with pytest.raises(TrainingError, match="needs the 'classifier' stage"):
        plan_stages([], ["localizer"], None)
    with pytest.raises(TrainingError, match="needs the 'localizer' stage"):
        plan_stages(["classifier"], ["crop"], None)
    # without a localization module the crop stage fine-tunes on whole images after the classifier
    assert plan_stages([], ["classifier", "crop"], None, localizer=False) == ["classifier", "crop"]
    with pytest.raises(TrainingError, match="needs the 'classifier' stage"):
        plan_stages([], ["crop"], None, localizer=False)
    with pytest.raises(TrainingError, match="cannot run after"):
        plan_stages(["classifier", "weighted"], ["localizer"], None)


def test_non_finite_loss_stops_with_stage_epoch_and_step():
    state = StageState("crop", epoch=2, step=6)
    check_finite(torch.tensor(1.5), state, DistInfo())
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TrainingError, match=r"stage 'crop', epoch 3, step 7"):
            check_finite(torch.tensor(bad), state, DistInfo())


def test_selection_prefers_higher_top1_and_lower_localizer_loss():
    assert selection_score("crop", {"top1": 0.8, "loss": 1.0}) > selection_score(
        "crop", {"top1": 0.7, "loss": 0.1}
    )
    assert selection_score("localizer", {"loss": 0.1}) > selection_score("localizer", {"loss": 0.2})


def test_out_of_range_labels_are_a_clear_error_checked_on_the_cpu():
    from elope.engine.loop import check_labels
    from elope.failures import TrainingError

    check_labels(torch.tensor([0, 2, 1]), 3)
    for bad in (torch.tensor([0, 3]), torch.tensor([-1, 0])):
        with pytest.raises(TrainingError, match=r"outside \[0, 2\]"):
            check_labels(bad, 3)


def test_the_localizer_leaves_every_other_random_number_unchanged():
    # rows of an ablation with the same seed share their classifier stage only if adding the module
    # neither changes the other layers' initial weights nor the random numbers drawn after construction
    from elope.engine.stages import attach_paired_localizer
    from elope.nn.model import ELoPE

    torch.manual_seed(3)
    with_module = ELoPE("resnet18", 4, embedding_dim=8, localizer=False)
    attach_paired_localizer(with_module)
    after_with = torch.rand(3)
    torch.manual_seed(3)
    without = ELoPE("resnet18", 4, embedding_dim=8, localizer=False)
    after_without = torch.rand(3)
    assert torch.equal(after_with, after_without)
    assert with_module.localizer is not None and with_module.config["localizer"]
    plain = without.state_dict()
    for key, value in with_module.state_dict().items():
        if not key.startswith("localizer."):
            assert torch.equal(value, plain[key]), key
