"""Long-tailed data (issue 18): the class-balanced sampler (exact resume, DDP shards, distinct augmentations
of repeated draws), the cross-entropy's class weights, and class means that only move with their class."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elope.config import load_config
from elope.engine.balance import class_weights
from elope.engine.sampling import EpochSampler, SeededItems, balanced_draws, item_seed
from elope.nn.losses import ClassMeanLoss

LABELS = [0] * 40 + [1] * 4 + [2] * 4 + [3] * 40  # 88 items, two rare classes


def _keys(sampler: EpochSampler) -> list[tuple[int, ...]]:
    return list(sampler)


def test_balanced_draws_make_every_class_equally_likely():
    draws = balanced_draws(LABELS, 40_000, torch.Generator().manual_seed(0))
    per_class = collections.Counter(LABELS[i] for i in draws)
    assert all(abs(n / 40_000 - 0.25) < 0.01 for n in per_class.values())
    within = collections.Counter(i for i in draws if LABELS[i] == 1)  # the 4 images of a rare class alike
    assert set(within) == {40, 41, 42, 43} and max(within.values()) / min(within.values()) < 1.15


def test_balanced_epoch_keeps_its_length_and_depends_on_seed_and_epoch_only():
    a = _keys(EpochSampler(88, 8, seed=3, epoch=2, labels=LABELS))
    assert a == _keys(EpochSampler(88, 8, seed=3, epoch=2, labels=LABELS))
    assert a != _keys(EpochSampler(88, 8, seed=3, epoch=3, labels=LABELS))
    assert len(a) == 88 and [k[2] for k in a] == list(range(88))  # the draw's position rides along
    rare = sum(LABELS[k[1]] in (1, 2) for k in a)
    assert rare > 88 * 4 / 44  # far more often than in a shuffled epoch (8 of 88)
    assert [k[1] for k in _keys(EpochSampler(88, 8, seed=3, epoch=2))] != [k[1] for k in a]


def test_balanced_resume_skips_the_done_batches_and_replays_the_rest():
    full = _keys(EpochSampler(88, 8, seed=0, epoch=1, labels=LABELS))
    rest = _keys(EpochSampler(88, 8, seed=0, epoch=1, skip_batches=3, labels=LABELS))
    assert (
        rest == full[24:] and len(EpochSampler(88, 8, seed=0, epoch=1, skip_batches=3, labels=LABELS)) == 64
    )


@pytest.mark.parametrize("world", [2, 4])
def test_balanced_shards_concatenate_to_the_single_process_batches(world: int):
    single = _keys(EpochSampler(90, 8, seed=1, labels=[*LABELS, 0, 3]))
    ranks = [
        _keys(EpochSampler(90, 8, seed=1, rank=r, world_size=world, labels=[*LABELS, 0, 3]))
        for r in range(world)
    ]
    local = 8 // world
    for step in range(len(single) // 8):
        batch = [k for r in ranks for k in r[step * local : (step + 1) * local]]
        assert batch == single[step * 8 : (step + 1) * 8]
    assert len(single) == 88  # the incomplete last global batch dropped, as with the permutation


def test_a_repeated_draw_gets_its_own_augmentation():
    class Noise(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(2)

    items = SeededItems(Noise(), seed=5)
    assert torch.equal(items[(0, 1, 7)], items[(0, 1, 7)])
    assert not torch.equal(items[(0, 1, 7)], items[(0, 1, 8)])
    assert torch.equal(items[(0, 1)], items[(0, 1)])
    old = int(np.random.SeedSequence([5, 0, 1]).generate_state(2, dtype=np.uint64)[0] >> 1)
    assert item_seed(5, 0, 1) == old != item_seed(5, 0, 1, 0)  # a shuffled epoch's seeds are unchanged


def test_class_weights_by_hand():
    assert class_weights(LABELS, 4, "none") is None
    w = class_weights([0, 0, 0, 1], 3, "inverse")
    # 1/3, 1, 0 scaled so that 3 * w0 + 1 * w1 = 4 images: w = (2/3, 2, 0)
    assert w.tolist() == pytest.approx([2 / 3, 2.0, 0.0])
    s = class_weights([0, 0, 0, 0, 1], 2, "sqrt_inverse")
    # 1/2, 1 scaled so that 4 * w0 + w1 = 5: factor 5/3
    assert s.tolist() == pytest.approx([5 / 6, 5 / 3])
    with pytest.raises(ValueError, match="class_weights"):
        class_weights(LABELS, 4, "cube")


def test_weighted_cross_entropy_is_the_weighted_mean():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 0, 1, 2])
    w = class_weights([0, 0, 0, 1], 3, "inverse") + torch.tensor([0.0, 0.0, 1.0])
    per_image = F.cross_entropy(logits, labels, reduction="none")
    expected = (w[labels] * per_image).sum() / w[labels].sum()
    assert float(F.cross_entropy(logits, labels, weight=w)) == pytest.approx(float(expected))


@pytest.mark.parametrize("renormalize", [False, True])
def test_a_class_absent_from_a_balanced_batch_keeps_its_mean(renormalize: bool):
    """Every batch of a balanced epoch: the classes in it move (Eqs. 6-7), the others keep their means bit
    for bit (also with the authors' re-normalisation of the means, which used to touch every class)."""
    torch.manual_seed(0)
    loss = ClassMeanLoss(4, 6, renormalize_means=renormalize).train()
    sampler = EpochSampler(88, 8, seed=0, labels=LABELS)
    keys = _keys(sampler)
    for step in range(len(keys) // 8):
        labels = torch.tensor([LABELS[k[1]] for k in keys[step * 8 : (step + 1) * 8]])
        before = loss.means.clone()
        loss(torch.randn(8, 6, requires_grad=True), labels)
        present = set(labels.tolist())
        for c in range(4):
            assert torch.equal(loss.means[c], before[c]) == (c not in present), (step, c)


def test_recipe_keys_are_checked(tmp_path: Path):
    cfg = load_config("synthetic", overrides={"train.sampler": "balanced", "loss.class_weights": "inverse"})
    assert cfg.train.sampler == "balanced" and cfg.loss.class_weights == "inverse"
    for key, value in (("train.sampler", "oversample"), ("loss.class_weights", "focal")):
        with pytest.raises(Exception, match=key.split(".")[1]):
            load_config("synthetic", overrides={key: value})


@pytest.mark.slow
def test_balanced_weighted_training_resumes_bit_exact_after_sigkill(tmp_path: Path):
    """Both long-tailed options through the real loop: a run killed mid-epoch and resumed ends with the
    weights and class means of an uninterrupted one (the draws come from ``seed + epoch``)."""
    from train_helpers import final_tensors, run_cli, side_by_side, tiny_args

    from elope.data import write_synthetic

    data = write_synthetic(tmp_path / "data", classes=3, train=[8, 2, 6], test=2, size=64)
    args = ("--set", "train.checkpoint_every_steps=2", "--stages", "classifier", "--set",
            "train.sampler=balanced", "--set", "loss.class_weights=sqrt_inverse")  # fmt: skip
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done, killed = side_by_side(
        lambda: run_cli(tiny_args(data, whole, *args, epochs=2)),
        lambda: run_cli(tiny_args(data, cut, *args, epochs=2), kill_at="classifier:1:3"),
    )
    assert done.returncode == 0, done.stderr
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    last = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    assert (last["stage"], last["epoch"], last["step"]) == ("classifier", 1, 2)  # resumes mid-epoch
    resumed = run_cli(["train", "--out", str(cut), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a, b = final_tensors(whole), final_tensors(cut)
    assert a.keys() == b.keys() and "class_means" in a
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_make_loader_draws_balanced_only_when_asked_and_when_training():
    from elope.engine.loop import make_loader
    from elope.engine.plan import LoaderSettings

    class Labelled(torch.utils.data.Dataset):
        targets = LABELS

        def __len__(self) -> int:
            return len(LABELS)

        def __getitem__(self, index: int) -> int:
            return index

    def keys(balanced: bool, shuffle: bool) -> list[tuple[int, ...]]:
        settings = LoaderSettings(
            seed=0, workers=0, pin_memory=False, rank=0, world_size=1, balanced=balanced
        )
        return list(make_loader(Labelled(), 8, settings, epoch=0, shuffle=shuffle).sampler)

    drawn = keys(balanced=True, shuffle=True)
    assert all(len(k) == 3 for k in drawn) and sum(LABELS[k[1]] in (1, 2) for k in drawn) > 8
    assert sorted(k[1] for k in keys(balanced=False, shuffle=True)) == list(range(88))  # a permutation
    assert [k[1] for k in keys(balanced=True, shuffle=False)] == list(range(88))  # evaluation: in order
