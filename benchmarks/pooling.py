"""Global k-max pooling against global average pooling, and topk against sort (issue 5).

On a (14, 2048, 14, 14) tensor (batch 14, ResNet-50's last feature map at 448 px), forward alone and
forward + backward (``torch.autograd.grad`` of the sum), interleaved:

* ``gap``: ``x.mean((2, 3))``, the baseline of every ratio;
* ``topk``: ``elope.nn.pooling.global_kmax_pool`` as shipped (``topk(k, sorted=False)``, Eq. 3);
* ``topk_sorted``: ``topk(k, sorted=True)``, what the weighted form (Eq. 4) needs;
* ``sort``: a full descending ``sort`` then the first k (Eq. 2 taken literally).

    python -m benchmarks.pooling
    python -m benchmarks.pooling --shape 14 2048 14 14 --k 4 --repeats 30 --inner 5 --json out.json
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import (
    benchmark_main,
    environment,
    interleaved,
    measuring,
)
from elope.nn.pooling import global_kmax_pool


def gap(x: Tensor, k: int) -> Tensor:
    """Global average pooling (``k`` ignored)."""
    return x.mean(dim=(2, 3))


def gkmp_topk(x: Tensor, k: int) -> Tensor:
    """The library's global k-max pooling (``topk``, unsorted)."""
    return global_kmax_pool(x, k)


def gkmp_topk_sorted(x: Tensor, k: int) -> Tensor:
    """Global k-max pooling with ``topk(sorted=True)`` (the weighted path's selection)."""
    return x.flatten(2).topk(k, dim=2, sorted=True).values.mean(dim=2)


def gkmp_sort(x: Tensor, k: int) -> Tensor:
    """Global k-max pooling by a full descending sort, Eq. (2), then the mean of the first k, Eq. (3)."""
    return x.flatten(2).sort(dim=2, descending=True).values[..., :k].mean(dim=2)


POOLS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "gap": gap,
    "topk": gkmp_topk,
    "topk_sorted": gkmp_topk_sorted,
    "sort": gkmp_sort,
}


def _forward(pool: Callable[[Tensor, int], Tensor], x: Tensor, k: int) -> Callable[[], Tensor]:
    def call() -> Tensor:
        with torch.no_grad():
            return pool(x, k)

    return call


def _forward_backward(pool: Callable[[Tensor, int], Tensor], x: Tensor, k: int) -> Callable[[], Tensor]:
    def call() -> Tensor:
        (grad,) = torch.autograd.grad(pool(x, k).sum(), x)
        return grad

    return call


def run(
    shape: Sequence[int] = (14, 2048, 14, 14),
    k: int = 4,
    repeats: int = 15,
    warmup: int = 2,
    inner: int = 2,
    threads: int | None = 2,
    flush_denormal: bool = True,
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict with ``forward`` and ``forward_backward`` sections."""
    with measuring(threads, flush_denormal):
        torch.manual_seed(0)
        x = torch.randn(*shape, requires_grad=True)
        reference = gkmp_sort(x.detach(), k)
        for name in ("topk", "topk_sorted"):
            if not torch.allclose(POOLS[name](x.detach(), k), reference, atol=1e-6):
                raise AssertionError(f"{name} disagrees with the sort-based k-max pooling")
        result: dict[str, Any] = {
            "benchmark": "pooling",
            "shape": list(shape),
            "k": k,
            "repeats": repeats,
            "inner": inner,
            "flush_denormal": flush_denormal,
            "environment": environment(),
        }
        for mode, make in (("forward", _forward), ("forward_backward", _forward_backward)):
            timings = interleaved(
                {name: make(pool, x, k) for name, pool in POOLS.items()},
                repeats=repeats,
                warmup=warmup,
                inner=inner,
            )
            result[mode] = {
                "median_ms": {name: timings.median(name) * 1e3 for name in timings},
                "stats_s": {name: timings.summary(name) for name in timings},
                "ratio_vs_gap": {
                    name: timings.ratio(name, "gap")["median_paired_ratio"]
                    for name in timings
                    if name != "gap"
                },
                "sort_vs_topk": timings.ratio("sort", "topk")["median_paired_ratio"],
            }
        faster = "topk" if result["forward_backward"]["sort_vs_topk"] >= 1.0 else "sort"
        result["faster_of_sort_and_topk"] = faster
    return result


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    env = result["environment"]
    lines = [
        f"pooling on {tuple(result['shape'])}, k={result['k']}, {result['repeats']} interleaved repeats of "
        f"{result['inner']} calls, medians",
        f"machine: {env['cpu']}, nproc {env['nproc']}, torch threads {env['torch_threads']}, "
        f"torch {env['torch']}"
        f", load average {env.get('loadavg_1min', float('nan')):.1f}",
    ]
    for mode in ("forward", "forward_backward"):
        section = result[mode]
        ms, ratio = section["median_ms"], section["ratio_vs_gap"]
        lines.append(
            f"{mode:<17} "
            + ", ".join(
                f"{name} {ms[name]:.3f} ms" + (f" (x{ratio[name]:.2f} GAP)" if name in ratio else "")
                for name in ms
            )
            + f"; sort/topk x{section['sort_vs_topk']:.2f}"
        )
    lines.append(f"faster of sort and topk: {result['faster_of_sort_and_topk']}")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape", type=int, nargs=4, default=[14, 2048, 14, 14], metavar=("B", "D", "H", "W")
    )
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inner", type=int, default=2, help="calls per timed sample")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report)


if __name__ == "__main__":
    main()
