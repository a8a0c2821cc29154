"""The position inside a stage of ``elope train`` (what a mid-epoch checkpoint saves and a resume restores)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["StageState"]


@dataclass
class StageState:
    """Position inside a stage plus what the epoch has summed so far (all processes together)."""

    stage: str
    epoch: int = 0  # epochs finished
    step: int = 0  # local batches done inside ``epoch``
    best: dict[str, Any] | None = None  # {"score", "epoch", "model", "criterion"}
    accum: dict[str, float] = field(default_factory=dict)
