"""The run's records: ``metrics.jsonl`` (one JSON line per epoch and stage, written durably) and the
same scalars in TensorBoard (``RUN/tensorboard``), with steps counted through the whole recipe."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from elope.config import STAGES, Config

__all__ = ["append_record", "open_writer", "tb_step", "truncate_metrics", "write_scalars"]


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``metrics.jsonl`` and sync it to disk (a kill loses no finished epoch)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_scalars(writer: Any, record: dict[str, Any], step: int) -> None:
    """The numbers of an epoch record as TensorBoard scalars ``<stage>/<key>`` at ``step``."""
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            writer.add_scalar(f"{record['stage']}/{key}", value, step)
    writer.flush()


def open_writer(folder: Path, purge_step: int | None = None) -> Any:
    """A TensorBoard writer on ``RUN/tensorboard``; ``purge_step`` drops events of a resumed run's lost
    epochs."""
    from torch.utils.tensorboard import SummaryWriter  # imported on use: TensorBoard is slow to import

    return SummaryWriter(str(folder), purge_step=purge_step)


def truncate_metrics(path: Path, lines: int) -> None:
    """Drop lines written after the checkpoint we resume from (they will be written again)."""
    if path.is_file():
        kept = path.read_text().splitlines(keepends=True)[:lines]
        path.write_text("".join(kept))


def tb_step(cfg: Config, stage: str, epoch: int) -> int:
    """TensorBoard step: epochs counted through the whole recipe, so stages follow each other."""
    offset = sum(getattr(cfg.stages, s).epochs for s in STAGES[: STAGES.index(stage)])
    return offset + epoch
