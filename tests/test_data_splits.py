"""The stratified, seeded validation split."""

from __future__ import annotations

import pytest

from elope.data import stratified_split


def test_stratified_counts_and_determinism() -> None:
    targets = [0] * 10 + [1] * 20 + [2] * 3 + [3]
    train, val = stratified_split(targets, val_fraction=0.1, seed=0)
    assert sorted(train + val) == list(range(len(targets)))
    per_class = {c: sum(targets[i] == c for i in val) for c in range(4)}
    assert per_class == {0: 1, 1: 2, 2: 1, 3: 0}  # at least 1 when possible, never the last image
    assert stratified_split(targets, 0.1, 0) == (train, val)
    assert stratified_split(targets, 0.1, 1) != (train, val)


def test_one_class_split_does_not_depend_on_the_others() -> None:
    _, val_a = stratified_split([0] * 10 + [1] * 10, 0.2, seed=5)
    _, val_b = stratified_split([0] * 10 + [2] * 7, 0.2, seed=5)
    assert [i for i in val_a if i < 10] == [i for i in val_b if i < 10]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 2])
def test_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split([0, 0, 1, 1], fraction)
