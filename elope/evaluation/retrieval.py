"""Retrieval metrics of an embedding, as the deep metric learning literature reports them.

Every image is a query against all the others (the query itself left out), ranked by cosine similarity of
the l2-normalised embeddings (the space of the class-mean loss, Eqs. 5-10 of the paper):

* ``recall@K`` (Oh Song et al., CVPR 2016): the share of queries with at least one image of their own
  class among their K nearest neighbours;
* ``map@r`` (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020): with R the number of other
  images of the query's class, the mean over queries of ``(1/R) · Σ_{i≤R} P(i) · rel(i)`` over the R
  nearest neighbours (P(i): precision at rank i, rel(i): 1 when the i-th neighbour shares the class).
  Queries alone in their class (R = 0) are left out of MAP@R and counted as misses by recall@K.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RECALL_KS", "retrieval_metrics"]

#: The K of recall@K that metric-learning papers report on CUB-200-2011 and Cars196.
RECALL_KS = (1, 2, 4, 8)


def retrieval_metrics(
    embeddings: Tensor, labels: Tensor, ks: Sequence[int] = RECALL_KS, *, chunk: int = 1024
) -> dict[str, float | int]:
    """``{"recall@1": ..., "recall@K": ..., "map@r": ..., "num_queries": N}`` of ``embeddings`` (N, D).

    Computed in chunks of ``chunk`` queries (memory N × chunk). Raises ValueError for fewer than two
    embeddings, non-finite values or mismatched shapes.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"embeddings (N, D) and labels (N,) expected, got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError(f"retrieval needs at least two embeddings, got {n}")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("the embeddings hold NaN or infinite values")
    if any(k < 1 for k in ks):
        raise ValueError(f"every K of recall@K must be at least 1, got {list(ks)}")
    x = F.normalize(embeddings.float(), dim=1)
    labels = labels.long()
    same_counts = (labels[:, None] == labels[None, :]).sum(dim=1) - 1  # R per query
    r_max = int(same_counts.max())
    depth = min(n - 1, max(max(ks), r_max))
    hits = {k: 0 for k in ks}
    ap_sum, ap_count = 0.0, 0
    for start in range(0, n, chunk):
        sims = x[start : start + chunk] @ x.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = -float("inf")  # the query itself
        order = sims.topk(depth, dim=1).indices
        rel = (labels[order] == labels[start : start + chunk, None]).float()  # (b, depth)
        for k in ks:
            hits[k] += int(rel[:, : min(k, depth)].any(dim=1).sum())
        r = same_counts[start : start + chunk]
        ranks = torch.arange(1, depth + 1, dtype=torch.float32)
        within = ranks[None, :] <= r[:, None].float()  # the first R neighbours of each query
        precision = rel.cumsum(dim=1) / ranks
        ap = (precision * rel * within).sum(dim=1) / r.clamp(min=1).float()
        ap_sum += float(ap[r > 0].sum())
        ap_count += int((r > 0).sum())
    result: dict[str, float | int] = {f"recall@{k}": hits[k] / n for k in ks}
    result["map@r"] = ap_sum / ap_count if ap_count else float("nan")
    result["num_queries"] = n
    return result
