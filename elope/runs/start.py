"""A training run's folder as the run starts: locked, guarded and, on resume, its recipe checked
(:func:`open_run`), then ``metrics.jsonl`` begun or cut back to the checkpoint (:func:`start_metrics`).

What a resume may change is :mod:`elope.runs.resume`; the folder's guard is :mod:`elope.runs.guard`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from elope import writer
from elope.config import Config
from elope.failures import Echo, to_stderr
from elope.runs.guard import open_run_folder
from elope.runs.layout import run_paths
from elope.runs.lock import run_lock
from elope.runs.metrics_log import truncate_metrics
from elope.runs.resume import check_same_data, record_recipe_change, resume_changes

__all__ = ["open_run", "start_metrics"]


def open_run(
    cfg: Config,
    out: Path,
    lock: ExitStack,
    is_main: bool = True,
    *,
    resume: bool,
    force: bool,
    allow: Collection[str] = (),
    echo: Echo = to_stderr,
) -> tuple[dict[str, Any] | None, dict[str, tuple[Any, Any]]]:
    """Lock ``out`` for the run (the lock joins ``lock``; the main process only), check it
    (:func:`elope.runs.guard.open_run_folder`: the checkpoint to resume from, or None; ``--force`` says
    through ``echo`` what it deleted) and, on resume, the recipe (:func:`resume_changes`). Returns
    ``(checkpoint, allowed changes)``."""
    if is_main:
        lock.enter_context(run_lock(out, "elope train"))
    generated = cfg.dataset.root is None
    ckpt = open_run_folder(
        out, resume=resume, force=force, generated_data=generated, is_main=is_main, echo=echo
    )
    return ckpt, resume_changes(cfg, out, ckpt, resume, allow)


def start_metrics(
    out: Path,
    data: dict[str, Any],
    ckpt: Mapping[str, Any] | None,
    changes: Mapping[str, tuple[Any, Any]],
    completed: list[str],
) -> list[str]:
    """``metrics.jsonl`` as the run starts (main process): a fresh run writes the data line; one resumed
    from ``ckpt`` checks that the data found is the run's (:func:`check_same_data`) and cuts the file back
    to the checkpoint's records (``metrics_lines``), and to whole records (a kill in the middle of a line
    leaves a broken one); an allowed recipe change is appended (:func:`record_recipe_change`). Returns what
    to tell the user."""
    path = run_paths(out).metrics
    notes: list[str | None] = []
    if ckpt is not None:
        check_same_data(path, data)
        _, note = truncate_metrics(path, int(ckpt["metrics_lines"]), data)
        notes.append(note)
    else:
        writer.write_text(path, json.dumps(data) + "\n")
    notes.append(record_recipe_change(out, changes, completed))
    return [n for n in notes if n]
