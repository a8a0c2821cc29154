"""Issue 29 item 3: evaluation metrics accumulate per batch in memory independent of the split's size and
without a dense C × C matrix (10,000 classes: 800 MB), giving the same answers as the dense confusion matrix.
"""

from __future__ import annotations

import torch

from elope.evaluation.metrics import EvalAccumulator, PairCounts, confused_pairs, per_class_accuracy


def _dense_reference(labels: torch.Tensor, preds: torch.Tensor, c: int, names: list[str]) -> dict:
    """The metrics from the whole split held at once (the former accumulator: a dense confusion)."""
    confusion = torch.bincount(labels * c + preds, minlength=c * c).view(c, c)
    flat = confusion.clone().fill_diagonal_(0).flatten()
    order = sorted(range(flat.numel()), key=lambda j: (-int(flat[j]), j))
    pairs = [
        {"true": names[j // c], "predicted": names[j % c], "count": int(flat[j])}
        for j in order[:10]
        if flat[j]
    ]
    n = labels.numel()
    return {
        "top1": float(confusion.diagonal().sum()) / n,
        "per_class": per_class_accuracy(confusion, names),
        "confused_pairs": pairs,
        "confusion": confusion,
    }


def _accumulate(labels: torch.Tensor, preds: torch.Tensor, c: int, batch: int) -> EvalAccumulator:
    acc = EvalAccumulator(c, with_ncm=True, with_boxes=False)
    for i in range(0, labels.numel(), batch):
        acc.update(labels[i : i + batch], preds[i : i + batch], preds[i : i + batch])
    return acc


def test_streamed_metrics_equal_the_dense_confusion_over_many_batches():
    g = torch.Generator().manual_seed(0)
    c, n = 9, 20_000  # many merges of the pair buffer (4096)
    names = [f"k{i}" for i in range(c)]
    labels = torch.randint(0, c - 1, (n,), generator=g)  # the last class has no images: None
    preds = torch.where(torch.rand(n, generator=g) < 0.6, labels, torch.randint(0, c, (n,), generator=g))
    acc = _accumulate(labels, preds, c, batch=37)
    ref, r = _dense_reference(labels, preds, c, names), acc.result(names)
    assert r["top1"] == ref["top1"] and r["per_class"] == ref["per_class"] and r["num_images"] == n
    assert r["per_class"]["k8"] is None and r["ncm_top1"] == ref["top1"]
    assert r["confused_pairs"] == ref["confused_pairs"]
    assert torch.equal(acc.confusion, ref["confusion"])
    assert confused_pairs(ref["confusion"], names) == ref["confused_pairs"]  # dense path, same order


def test_ties_in_confused_pairs_are_broken_by_index():
    pairs = PairCounts(4)
    pairs.add(torch.tensor([3, 1, 2, 0, 3]), torch.tensor([0, 2, 1, 1, 0]))
    names = list("abcd")
    assert pairs.top(names, k=3) == [
        {"true": "d", "predicted": "a", "count": 2},
        {"true": "a", "predicted": "b", "count": 1},
        {"true": "b", "predicted": "c", "count": 1},
    ]


def _held_bytes(acc: EvalAccumulator) -> int:
    acc.pairs.merge()
    return sum(t.numel() * t.element_size() for t in vars(acc).values() if isinstance(t, torch.Tensor)) + sum(
        t.numel() * t.element_size() for t in (acc.pairs.codes, acc.pairs.counts)
    )


def test_ten_thousand_classes_accumulate_in_memory_independent_of_the_split():
    """By construction: at C = 10,000 the accumulator holds 2 × C counts plus the distinct confused pairs
    (here a fixed set of 50), the same after 6,400 and after 64,000 images; the dense matrix was 800 MB."""
    c = 10_000
    g = torch.Generator().manual_seed(1)
    acc = EvalAccumulator(c, with_ncm=False, with_boxes=False)
    held = []
    for step in range(2000):
        labels = torch.randint(0, c, (32,), generator=g)
        preds = labels.clone()
        preds[:2] = torch.tensor([step % 50, (step % 50) + 1])
        labels[:2] = torch.tensor([(step % 50) + 7, (step % 50) + 9])
        acc.update(labels, preds)
        if step in (199, 1999):
            held.append(_held_bytes(acc))
    assert held[0] == held[1] < 2 * c * 8 + 100 * 8 * 2 + 1  # 160 kB, flat in N
    assert acc.result([str(i) for i in range(c)])["num_images"] == 64_000
