"""Reproducible data order for training: what makes an interrupted run resume bit-exactly.

* The order of epoch ``e`` is a permutation drawn from a generator seeded with ``seed + e``, so a resumed
  run replays it and skips the batches it has already done (:class:`EpochSampler`).
* The random augmentation of an item depends only on ``(seed, epoch, index)`` (:class:`SeededItems`), not
  on which process, worker or run loads it, nor on what was loaded before.

Under DDP (``elope.engine.distributed``) the epoch is cut into whole *global* batches of ``global_batch``
samples (an incomplete last global batch is dropped) and process ``r`` of ``W`` takes the ``r``-th slice of
``global_batch / W`` consecutive samples of each, so the processes together see exactly the batches one
process would.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for the augmentation of item ``index`` in ``epoch``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint64)[0] >> 1)


class SeededItems(Dataset):
    """``dataset`` indexed by ``(epoch, index)``; each item's transform draws from RNGs seeded by
    :func:`item_seed`. The caller's torch, numpy and python RNG states are left as they were.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        s = item_seed(self.seed, epoch, index)
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


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for this process's share of one epoch.

    Args:
        size: number of items in the dataset.
        global_batch: samples per optimiser step over all processes (``shuffle=True``) or the evaluation
            batch (``shuffle=False``: every item once, process ``r`` takes items ``r, r + W, ...``).
        seed, epoch: the permutation is seeded with ``seed + epoch``.
        rank, world_size: this process and the number of processes.
        skip_batches: local batches already done in this epoch (resume).
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
    ) -> None:
        if shuffle and global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} processes")
        self.size, self.global_batch = size, global_batch
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.shuffle, self.skip_batches = shuffle, skip_batches
        self.local_batch = global_batch // world_size if shuffle else global_batch

    def indices(self) -> list[int]:
        """This process's indices for the whole epoch (before skipping)."""
        if not self.shuffle:
            return list(range(self.rank, self.size, self.world_size))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        steps = self.size // self.global_batch
        b, r = self.global_batch, self.local_batch
        return [i for s in range(steps) for i in perm[s * b + self.rank * r : s * b + (self.rank + 1) * r]]

    def num_batches(self) -> int:
        """Local batches in the whole epoch."""
        n = len(self.indices()) if not self.shuffle else self.size // self.global_batch * self.local_batch
        return -(-n // self.local_batch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices()[self.skip_batches * self.local_batch :]:
            yield self.epoch, i

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.skip_batches * self.local_batch)
