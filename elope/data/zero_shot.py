"""The zero-shot protocol of deep metric learning (Oh Song et al., CVPR 2016): the dataset option
``zero_shot``.

The classes are cut in two halves in the dataset's class order: ``seen`` keeps the first half (CUB-200-2011:
classes 1–100; Cars196: 1–98), ``unseen`` the second (CUB: 101–200). Following that literature, a half
holds *every* image of its classes, the dataset's own train/test split ignored: ``trainval`` and
``test`` are all of them, ``train``/``val`` a seeded stratified split of them (``val_fraction``, ``seed``).
A model trained with ``zero_shot: seen`` is measured by retrieval on the ``unseen`` half
(``elope evaluate --retrieval``), classes it has never seen. Labels are renumbered from 0 within a half.
"""

from __future__ import annotations

import dataclasses

from .annotations import DatasetIndex, Record
from .splits import stratified_split

__all__ = ["ZERO_SHOT_HALVES", "zero_shot_records"]

ZERO_SHOT_HALVES = ("seen", "unseen")


def zero_shot_records(
    index: DatasetIndex, split: str, half: str, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[Record]]:
    """``(classes, records)`` of ``split`` in the ``half`` (``seen`` | ``unseen``) of ``index``'s classes."""
    if half not in ZERO_SHOT_HALVES:
        raise ValueError(f"zero_shot must be one of {', '.join(ZERO_SHOT_HALVES)} (or unset), got {half!r}")
    cut = len(index.classes) // 2
    if cut < 2:
        raise ValueError(
            f"zero_shot needs at least 4 classes (2 per half), the dataset at {index.root} has "
            f"{len(index.classes)}"
        )
    low, high = (0, cut) if half == "seen" else (cut, len(index.classes))
    everything = index.trainval() + list(index.splits["test"])
    records = [dataclasses.replace(r, label=r.label - low) for r in everything if low <= r.label < high]
    if split in ("train", "val"):
        train, val = stratified_split([r.label for r in records], val_fraction=val_fraction, seed=seed)
        records = [records[i] for i in (train if split == "train" else val)]
    return list(index.classes[low:high]), records
