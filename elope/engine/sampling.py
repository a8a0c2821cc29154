"""Reproducible data order for training: what makes an interrupted run resume bit-exactly.

* The order of epoch ``e`` is a permutation drawn from a generator seeded with ``seed + e``, so a resumed
  run replays it and skips the batches it has already done (:class:`EpochSampler`).
* The random augmentation of an item depends only on ``(seed, epoch, index)`` (:class:`SeededItems`), not
  on which process, worker or run loads it, nor on what was loaded before.

Under DDP (``elope.engine.distributed``) the epoch is cut into whole *global* batches of ``global_batch``
samples (an incomplete last global batch is dropped) and process ``r`` of ``W`` takes the ``r``-th slice of
``global_batch / W`` consecutive samples of each, so the processes together see exactly the batches one
process would.

Class-balanced sampling (``train.sampler: balanced``; Kang et al., "Decoupling representation and
classifier for long-tailed recognition", ICLR 2020): the epoch keeps its length (one draw per training
image), but each draw picks a class uniformly and then one of its images uniformly, with replacement
(:func:`balanced_draws`, seeded by ``seed + epoch`` like the permutation), so rare classes come as often
as common ones. The draws are cut into global batches and shards exactly as the permutation is, and an
image drawn twice in an epoch gets two augmentations: its key carries the draw's position
(``(epoch, index, position)``, :func:`item_seed`).

A shard set (``--dataset shards``) is read in shard order instead (:class:`ShardSampler`): each process
reads its own runs of shards, the permutation of the shards seeded by ``seed + epoch`` as above.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

SAMPLERS = ("shuffle", "balanced")


def item_seed(seed: int, epoch: int, index: int, *draw: int) -> int:
    """A 63-bit seed for the augmentation of item ``index`` in ``epoch`` (``draw``: the position of the draw
    in a class-balanced epoch, where an item may come more than once)."""
    entropy = [seed, epoch, index, *([1, *draw] if draw else [])]  # (a trailing 0 would change nothing)
    return int(np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)[0] >> 1)


def balanced_draws(labels: Sequence[int], count: int, generator: torch.Generator) -> list[int]:
    """``count`` indices drawn with replacement so that every class is equally likely (each index has
    probability 1 / (number of classes × images of its class)): a class uniformly, then an image of it."""
    targets = torch.as_tensor(list(labels), dtype=torch.long)
    if targets.numel() == 0:
        return []
    per_class = torch.bincount(targets).double()
    weights = 1.0 / per_class[targets]
    return torch.multinomial(weights, count, replacement=True, generator=generator).tolist()


class SeededItems(Dataset):
    """``dataset`` indexed by ``(epoch, index)``; each item's transform draws from RNGs seeded by
    :func:`item_seed`. The caller's torch, numpy and python RNG states are left as they were.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, ...]) -> Any:
        epoch, index, *draw = key
        s = item_seed(self.seed, epoch, index, *draw)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s % 2**32)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class EpochSampler(Sampler[tuple[int, ...]]):
    """Yields ``(epoch, index)`` for this process's share of one epoch (``(epoch, index, position)`` with
    ``labels``: class-balanced draws).

    Args:
        size: number of items in the dataset.
        global_batch: samples per optimiser step over all processes (``shuffle=True``) or the evaluation
            batch (``shuffle=False``: every item once, process ``r`` takes items ``r, r + W, ...``).
        seed: the permutation is seeded with ``seed + epoch``.
        epoch: see ``seed``.
        rank: this process.
        world_size: the number of processes.
        skip_batches: local batches already done in this epoch (resume).
        labels: the class of each item: class-balanced draws (:func:`balanced_draws`) instead of a
            permutation, when shuffling.
    """

    def __init__(
        self,
        size: int,
        global_batch: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        skip_batches: int = 0,
        labels: Sequence[int] | None = None,
    ) -> None:
        if shuffle and global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} processes")
        self.size, self.global_batch = size, global_batch
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.shuffle, self.skip_batches = shuffle, skip_batches
        self.local_batch = global_batch // world_size if shuffle else global_batch
        self.labels = None if labels is None or not shuffle else list(labels)
        if self.labels is not None and len(self.labels) != size:
            raise ValueError(f"labels has {len(self.labels)} entries for {size} items")

    def _positions(self) -> list[int]:
        """Positions in the epoch's order (before sharding) of this process's share of it."""
        if not self.shuffle:
            return list(range(self.rank, self.size, self.world_size))
        steps = self.size // self.global_batch
        b, r = self.global_batch, self.local_batch
        return [p for s in range(steps) for p in range(s * b + self.rank * r, s * b + (self.rank + 1) * r)]

    def _order(self) -> list[int]:
        """The epoch's order of items: a permutation, or the class-balanced draws."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.labels is not None:
            return balanced_draws(self.labels, self.size, g)
        return torch.randperm(self.size, generator=g).tolist()

    def keys(self) -> list[tuple[int, ...]]:
        """This process's ``(epoch, index[, position])`` keys for the whole epoch (before skipping)."""
        if not self.shuffle:
            return [(self.epoch, i) for i in self._positions()]
        order = self._order()
        if self.labels is not None:
            return [(self.epoch, order[p], p) for p in self._positions()]
        return [(self.epoch, order[p]) for p in self._positions()]

    def indices(self) -> list[int]:
        """This process's indices for the whole epoch (before skipping)."""
        return [key[1] for key in self.keys()]

    def num_batches(self) -> int:
        """Local batches in the whole epoch."""
        n = len(self._positions())
        return -(-n // self.local_batch)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        yield from self.keys()[self.skip_batches * self.local_batch :]

    def __len__(self) -> int:
        return max(0, len(self._positions()) - self.skip_batches * self.local_batch)


class ShardSampler(EpochSampler):
    """The order of a shard set's epoch (:mod:`elope.data.shards`): each process reads its own shards.

    The epoch's order is the shards in a permutation seeded with ``seed + epoch``, each shard's items in a
    permutation drawn next from the same generator (the writer shuffled the split across the shards
    already, so a shard is a random share of it). That order is cut into ``streams`` contiguous streams of
    ``size // streams`` items; global batch ``t`` is the ``t``-th slice of ``global_batch / streams`` items
    of each stream, in stream order, for ``size // global_batch`` steps. Process ``r`` of ``W`` reads
    streams ``r * streams / W`` to ``(r + 1) * streams / W - 1``: runs of whole shards (the two at each
    stream's ends shared with the neighbours), never all of them.

    ``streams`` 0 (the default) is one stream per process: the batches then depend on ``W`` (the set of
    items of an epoch does not, when the global batch divides the split). A fixed ``streams``
    (``dataset.shard_streams``) gives the same global batches on 1, 2, ... processes that divide it, as
    the canonical node count of MosaicML's StreamingDataset does: the same run on another number of
    machines. Each item's augmentation is seeded by its key (:class:`SeededItems`) in every case.

    Resume skips ``skip_batches`` local batches, as :class:`EpochSampler` does. Without shuffling
    (evaluation) the order is :class:`EpochSampler`'s.

    Args:
        shard_of: the shard of each item (``ShardDataset.shard_of``).
        global_batch: see :class:`EpochSampler`; the other arguments too (no ``labels``: class-balanced
            draws read every shard, :class:`EpochSampler` does them).
        streams: see above; a multiple of the number of processes that divides ``global_batch``.
    """

    def __init__(
        self, shard_of: Sequence[int], global_batch: int, *, streams: int = 0, **options: Any
    ) -> None:
        super().__init__(len(shard_of), global_batch, **options)
        self.shard_of = list(shard_of)
        self.streams = int(streams) or self.world_size
        if self.shuffle and (self.streams % self.world_size or global_batch % self.streams):
            raise ValueError(
                f"dataset.shard_streams={self.streams} must be a multiple of the {self.world_size} processes "
                f"and divide the batch size {global_batch}"
            )

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        members: dict[int, list[int]] = {}
        for i, shard in enumerate(self.shard_of):
            members.setdefault(shard, []).append(i)
        shards = sorted(members)
        order: list[int] = []
        for s in torch.randperm(len(shards), generator=g).tolist():
            items = members[shards[s]]
            order += [items[j] for j in torch.randperm(len(items), generator=g).tolist()]
        return order

    def _positions(self) -> list[int]:
        if not self.shuffle:
            return super()._positions()
        length, piece = self.size // self.streams, self.global_batch // self.streams
        mine = range(
            self.rank * self.streams // self.world_size, (self.rank + 1) * self.streams // self.world_size
        )
        steps = self.size // self.global_batch
        return [j * length + t * piece + k for t in range(steps) for j in mine for k in range(piece)]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (the run's ``train.seed``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
