"""The run's records: ``metrics.jsonl`` (one JSON line per epoch and stage, written durably) and the
same scalars in TensorBoard (``RUN/tensorboard``), with steps counted through the whole recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elope import writer
from elope.config import STAGES, Config

__all__ = ["append_record", "line_count", "open_writer", "tb_step", "truncate_metrics", "write_scalars"]


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``metrics.jsonl`` and sync it to disk (a kill loses no finished epoch)."""
    writer.append_text(path, json.dumps(record) + "\n")


def line_count(path: Path) -> int:
    """Whole lines of ``metrics.jsonl`` (0 when it is missing): what a checkpoint records, so a resume cuts
    the file back to the records of that moment (:func:`truncate_metrics`)."""
    return path.read_bytes().count(b"\n") if path.is_file() else 0


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


def _whole_records(lines: list[bytes]) -> int:
    """How many of ``lines`` (with their line ends) are whole JSON records, counted from the start."""
    for number, line in enumerate(lines):
        try:
            ok = line.endswith(b"\n") and isinstance(json.loads(line), dict)
        except ValueError:  # not UTF-8, not JSON: cut off in the middle, or damaged
            ok = False
        if not ok:
            return number
    return len(lines)


def truncate_metrics(path: Path, lines: int, data: dict[str, Any] | None = None) -> tuple[int, str | None]:
    """Keep the first ``lines`` lines of ``metrics.jsonl`` (those of the checkpoint a run resumes from; the
    later ones are written again), and of those only the whole records before a broken one: a process
    killed while writing a line leaves half a record, and the next one would be glued to it.

    ``data`` (the data line) starts the file again when not even the first line is whole.
    Returns ``(lines kept, what was repaired or None)``.
    """
    if not path.is_file():
        if data is None:
            return 0, None
        writer.write_text(path, json.dumps(data) + "\n")
        return 1, f"{path} was missing: started it again with the data line (its epoch records are lost)"
    kept = path.read_bytes().splitlines(keepends=True)[:lines]
    whole = _whole_records(kept)
    note = None
    if whole < len(kept):
        note = (
            f"{path}: line {whole + 1} is not a whole record (the process was killed while writing it, or "
            f"the file was damaged): kept the {whole} whole line(s) before it"
        )
    elif len(kept) < lines:
        note = f"{path} holds {len(kept)} of the {lines} lines of the checkpoint: its tail was lost"
    body = b"".join(kept[:whole])
    if whole == 0 and data is not None:
        body, whole = (json.dumps(data) + "\n").encode(), 1
    writer.write_bytes(path, body)
    return whole, note


def tb_step(cfg: Config, stage: str, epoch: int) -> int:
    """TensorBoard step: epochs counted through the whole recipe, so stages follow each other."""
    offset = sum(getattr(cfg.stages, s).epochs for s in STAGES[: STAGES.index(stage)])
    return offset + epoch
