"""A deterministic, seeded, stratified validation split carved from a training split.

The paper tunes its few hyper-parameters "using a validation set separated from the training images"
(Sec. 6); the test split is never used to choose anything. Every class keeps at least one training image
and, when it has two or more, gives at least one to validation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SPLITS", "stratified_split"]

#: The split names every dataset answers to (:func:`elope.data.base.select_split`).
SPLITS = ("train", "val", "test", "trainval")


def stratified_split(
    targets: Sequence[int], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Split indices ``0..len(targets)-1`` into ``(train, val)``, class by class.

    Each class ``c`` with ``n`` images gives ``round(n * val_fraction)`` of them to validation, clipped
    to ``[1, n - 1]`` (none when ``n == 1``). Which images go is drawn with ``numpy.random.default_rng``
    seeded by ``(seed, c)``, so the split of one class depends neither on the others nor on the order the
    classes are visited in. Both returned lists are sorted.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    targets_array = np.asarray(targets, dtype=np.int64)
    val: list[int] = []
    for label in np.unique(targets_array):
        members = np.flatnonzero(targets_array == label)
        n = len(members)
        if n < 2:
            continue
        n_val = min(max(round(n * val_fraction), 1), n - 1)
        rng = np.random.default_rng([int(seed), int(label)])
        val.extend(int(i) for i in rng.permutation(members)[:n_val])
    val_set = set(val)
    train = [i for i in range(len(targets_array)) if i not in val_set]
    return train, sorted(val)
