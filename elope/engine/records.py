"""What a run writes and says as it goes: the data line and the epoch records of ``metrics.jsonl``, the
same scalars in TensorBoard (:mod:`elope.runs.metrics_log`), ``config.yaml`` and the lines it tells the user
(through ``run.echo``)."""

from __future__ import annotations

from typing import Any

from elope import writer
from elope.engine.run import Run
from elope.runs.environment import environment
from elope.runs.layout import run_paths
from elope.runs.lock import check_lock_held
from elope.runs.metrics_log import append_record, open_writer, tb_step, write_scalars
from elope.runs.start import start_metrics

__all__ = ["append_metrics", "describe_data", "epoch_line", "start_records"]


def describe_data(run: Run) -> dict[str, Any]:
    """The first line of ``metrics.jsonl``: dataset, classes, and the split and image count of each role."""
    d = run.cfg.dataset
    return {
        "event": "data",
        "dataset": d.name,
        "root": d.root,
        "classes": len(run.classes),
        **run.data.sizes(),
        "environment": environment(run.device),
    }


def start_records(
    run: Run, ckpt: dict[str, Any] | None, todo: list[str], changes: dict[str, tuple[Any, Any]]
) -> None:
    """``metrics.jsonl`` (:func:`elope.runs.start.start_metrics`), ``config.yaml``, the TensorBoard
    writer, and what the run will do (main process)."""
    paths, cfg, data = run_paths(run.out), run.cfg, describe_data(run)
    for note in start_metrics(run.out, data, ckpt, changes, run.completed):
        run.echo(note)
    writer.write_text(paths.config, cfg.to_yaml())
    val = data["val"]
    run.echo(
        f"data: {data['dataset']} at {data['root']}: {len(run.classes)} classes; train on "
        f"{data['train']['split']!r} ({data['train']['images']} images); "
        + ("no validation split" if val is None else f"validate on {val['split']!r} ({val['images']} images)")
    )
    start = tb_step(cfg, todo[0], (ckpt or {}).get("epoch", 0) + 1) if todo else None
    run.writer = open_writer(paths.tensorboard, purge_step=start if ckpt is not None else None)
    run.echo(
        f"run {run.out}: stages to run {todo or 'none (all done)'}; {run.dist.world_size} process(es), "
        f"device {run.device}"
    )


def append_metrics(run: Run, record: dict[str, Any], step: int) -> None:
    """One JSON line per epoch and stage in ``metrics.jsonl``, and the same scalars in TensorBoard (main
    process)."""
    if not run.main:
        return
    check_lock_held(run.out)  # the folder deleted or moved meanwhile: one clear line, not a new file
    append_record(run_paths(run.out).metrics, record)
    if run.writer is not None:
        write_scalars(run.writer, record, step)


def epoch_line(r: dict[str, Any]) -> str:
    """An epoch record in one line for the user."""
    parts = [f"[{r['stage']}] epoch {r['epoch']}", f"lr {r['lr']:.2e}", f"loss {r['train_loss']:.4f}"]
    if "train_acc" in r:
        parts.append(f"acc {r['train_acc']:.3f}")
    if "val_top1" in r:
        parts.append(f"val top-1 {r['val_top1']:.3f}")
    elif "val_loss" in r:
        parts.append(f"val loss {r['val_loss']:.4f}")
    if "val_loc_iou50" in r:
        parts.append(f"val loc {r['val_loc_iou50']:.3f}")
    parts.append(f"{r['images_per_s']:.1f} img/s")
    return ", ".join(parts) + (" *" if r.get("best") else "")
