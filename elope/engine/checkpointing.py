"""The live run into a checkpoint and back: what ``checkpoints/<stage>.pt`` and ``checkpoints/last.pt`` hold
and how a run continues from them. What stays here needs the engine (the run's :class:`Run` and
:class:`StageState`, the processes of :mod:`elope.engine.distributed`, weighted pooling's structural change);
the rest of resuming is :mod:`elope.runs`: the files written and read atomically, the RNG states and the
architecture check (:mod:`elope.runs.checkpoint`), what a resume may change (:mod:`elope.runs.resume`),
the folder opened for it (:mod:`elope.runs.start`, :mod:`elope.runs.guard`).

Exactness: the data order of an epoch is a function of (seed, epoch) and each item's augmentation of
(seed, epoch, index) (``elope.engine.sampling``); the checkpoint carries model, optimizer, scheduler,
class means, the best epoch so far, the epoch's running sums and every process's RNG states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from elope.engine import distributed as D
from elope.engine.run import Run
from elope.engine.stage_state import StageState
from elope.engine.stages import enable_weighted_pooling
from elope.failures import TrainingError
from elope.nn.weights import non_finite
from elope.runs.checkpoint import (
    FORMAT,
    CheckpointError,
    architecture,
    atomic_save,
    check_model_config,
    clone_state,
    load_state_strict,
    rng_state,
    set_rng_state,
)
from elope.runs.layout import run_paths
from elope.runs.lock import check_lock_held
from elope.runs.metrics_log import line_count

__all__ = ["restore", "resume_stage", "save_checkpoint"]


def save_checkpoint(
    run: Run,
    state: StageState | None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    names: tuple[str, ...] = ("last.pt",),
) -> None:
    """Write ``checkpoints/<name>`` for each of ``names`` (rank 0) with everything an exact resume needs.

    At the end of the best epoch the best weights *are* the model's: they are stored once (``best`` then
    says ``same_as_model``), which halves the usual end-of-epoch checkpoint.
    """
    _refuse_non_finite(run, state)
    check_lock_held(run.out)  # the folder deleted or moved meanwhile: never made again by a mkdir
    rngs = D.all_gather_object(rng_state(), run.dist)
    if run.criterion is not None and run.dist.enabled:
        means = D.all_gather_tensor(run.criterion.means[None], run.dist)
        if not all(torch.equal(means[0], m) for m in means[1:]):
            raise TrainingError("the class means differ between processes (they must stay identical)")
    best = None if state is None else state.best
    if best is not None and best["model"] is not None and (best["epoch"], 0) == (state.epoch, state.step):
        best = {**best, "model": None, "criterion": None, "same_as_model": True}
    if run.main:
        ckpt = {
            "format": FORMAT,
            "stage": None if state is None else state.stage,
            "epoch": 0 if state is None else state.epoch,
            "step": 0 if state is None else state.step,
            "completed": list(run.completed),
            "model": run.model.state_dict(),
            "model_config": dict(run.model.config),
            "model_spec": run.model.spec.to_dict(),
            "criterion": None if run.criterion is None else run.criterion.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "scaler": None if scaler is None else scaler.state_dict(),
            "best": best,
            "accum": {} if state is None else dict(state.accum),
            "rng": rngs,
            "data_seed": run.cfg.train.seed,
            "world_size": run.dist.world_size,
            "metrics_lines": line_count(run_paths(run.out).metrics),
            "config": run.cfg.to_dict(),
        }
        folder = run_paths(run.out).checkpoints
        atomic_save(ckpt, *(folder / name for name in names))
    D.barrier(run.dist)


def _refuse_non_finite(run: Run, state: StageState | None) -> None:
    """Weights (or class means) with a NaN or an infinity are never saved: the run stops instead, and the
    last checkpoint keeps the last finite state."""
    tensors = dict(run.model.state_dict())
    if run.criterion is not None:
        tensors.update({f"class means: {k}": v for k, v in run.criterion.state_dict().items()})
    bad = non_finite(tensors)
    if not bad:
        return
    stage = state.stage if state is not None else (run.completed or ["?"])[-1]
    when = f"epoch {state.epoch + (state.step > 0)}" if state is not None else "its end"
    raise TrainingError(
        f"stage {stage!r}, {when}: the weights are not finite (NaN or infinite) in {len(bad)} of "
        f"{len(tensors)} tensors ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); they were not saved "
        f"(checkpoints/last.pt keeps the last finite state). Lower stages.{stage}.lr and start over (--force)"
    )


def restore(run: Run, ckpt: dict[str, Any], path: Path) -> None:
    """Load model, class means and the τ of the model's spec (chosen at the end of stage 2) from a
    checkpoint, refusing one made for another architecture."""
    saved_spec = ckpt.get("model_spec")
    saved = architecture(ckpt["model_config"], saved_spec)
    check_model_config(saved, architecture(dict(run.model.config), run.model.spec.to_dict()), path)
    run.model.spec = run.model.spec.replace(tau=(saved_spec or ckpt["model_config"])["tau"])
    if ckpt["model_config"].get("weighted") and not run.model.config.get("weighted"):
        enable_weighted_pooling(run.model)
    load_state_strict(run.model, ckpt["model"], f"the model in {path}")
    if run.criterion is not None:
        if ckpt["criterion"] is None:
            raise CheckpointError(f"{path} holds no class means but loss.variant is {run.cfg.loss.variant!r}")
        load_state_strict(run.criterion, ckpt["criterion"], f"the class means in {path}")
    run.completed = list(ckpt["completed"])


def resume_stage(
    run: Run,
    stage: str,
    ckpt: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> StageState:
    """Continue an interrupted stage: optimizer, scheduler, scaler, best epoch, running sums and the RNG
    states of ``ckpt`` (this process's, or the first one's when the number of processes changed)."""
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    best = ckpt["best"]
    if best is not None and best.pop("same_as_model", False):
        best["model"] = clone_state(run.model)
        best["criterion"] = None if run.criterion is None else clone_state(run.criterion)
    rngs = ckpt["rng"]
    set_rng_state(rngs[run.dist.rank] if len(rngs) == run.dist.world_size else rngs[0])
    return StageState(stage, ckpt["epoch"], ckpt["step"], best, dict(ckpt["accum"]))
