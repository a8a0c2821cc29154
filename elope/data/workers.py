"""How many DataLoader worker processes a machine can use: the configured number (``dataset.num_workers``,
``--num-workers``), capped at the CPU cores this process may run on, so that the paper's recipes (4
workers) run quietly on a 2-core machine instead of warning that the DataLoader oversubscribes it. Each
item is seeded on its own (:class:`elope.engine.sampling.SeededItems`), so the count changes speed only,
never the numbers."""

from __future__ import annotations

import os

__all__ = ["available_cores", "usable_workers"]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, as PyTorch's DataLoader
    counts them), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def usable_workers(configured: int) -> int:
    """``configured`` worker processes, at most :func:`available_cores` (0 stays 0: load in the main
    process)."""
    return min(int(configured), available_cores())
