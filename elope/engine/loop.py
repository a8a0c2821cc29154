"""The epoch loop of ``elope train``: the seeded, resumable data order, one step after the other, the
running sums of all processes, the NaN guard and the mid-epoch checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from elope.data.source import SourceCollate
from elope.engine import distributed as D
from elope.engine.context import Run, StageState, check_labels
from elope.engine.resume import save_checkpoint
from elope.engine.sampling import EpochSampler, SeededItems
from elope.engine.stages import stage_input_size, uses_crops
from elope.engine.steps import classifier_loss, localizer_loss, stage_batch
from elope.failures import TrainingError

__all__ = [
    "STEP_HOOKS",
    "batches_per_epoch",
    "check_finite",
    "epoch_metrics",
    "make_loader",
    "merge_accum",
    "train_one_epoch",
    "train_step",
]


def make_loader(
    run: Run, dataset: Any, batch: int, *, epoch: int, shuffle: bool, skip: int = 0, collate: Any = None
) -> DataLoader:
    sampler = EpochSampler(
        len(dataset),
        batch,
        seed=run.cfg.train.seed,
        epoch=epoch,
        rank=run.dist.rank,
        world_size=run.dist.world_size,
        shuffle=shuffle,
        skip_batches=skip,
    )
    return DataLoader(
        SeededItems(dataset, run.cfg.train.seed),
        batch_size=sampler.local_batch,
        sampler=sampler,
        num_workers=run.cfg.dataset.num_workers,
        pin_memory=run.device.type == "cuda",
        generator=torch.Generator(),  # keeps the DataLoader off the global RNG
        collate_fn=collate,
    )


def _stage_loader(run: Run, state: StageState, batch: int) -> DataLoader:
    """The stage's training loader from batch ``state.step`` on. The crop stages read uint8 originals
    (:mod:`elope.data.source`), resized and coloured on the device, or in the workers on a CPU run."""
    crops, size = uses_crops(run, state.stage), stage_input_size(run, state.stage)
    train_set = run.data.get("train", size, source=crops)
    collate = SourceCollate(size, render=run.device.type == "cpu") if crops else None
    return make_loader(
        run, train_set, batch, epoch=state.epoch, shuffle=True, skip=state.step, collate=collate
    )


def batches_per_epoch(run: Run, batch: int) -> int:
    return len(run.train_set) // batch


#: Called after every training step with the stage's state (``stage``, ``epoch``, ``step`` just done).
#: Empty in production; tests install hooks here (``tests/kill_at_step.py`` kills the process at a given
#: step to test the exact resume).
STEP_HOOKS: list[Callable[[StageState], None]] = []


def train_one_epoch(
    run: Run,
    state: StageState,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> dict[str, float]:
    """Train ``state.epoch`` from batch ``state.step`` on; returns the epoch's train metrics.

    Checkpoints every ``train.checkpoint_every_steps`` batches (``last.pt``) so a kill loses little.
    """
    cfg, stage = run.cfg, state.stage
    s_cfg = getattr(cfg.stages, stage)
    total = batches_per_epoch(run, s_cfg.batch_size)
    loader = _stage_loader(run, state, s_cfg.batch_size)
    local = {"loss": 0.0, "ce": 0.0, "le": 0.0, "correct": 0.0, "n": 0.0, "time": 0.0}
    bar = _progress_bar(run, state, loader, total)
    tick = time.perf_counter()
    for images, labels, _boxes in bar:
        check_labels(labels, len(run.classes))
        loss, parts = train_step(run, state, net, optimizer, scaler, images, labels)
        _add_batch(local, loss, parts, float(labels.shape[0]))
        now = time.perf_counter()
        local["time"] += now - tick
        state.step += 1
        if run.main and cfg.train.progress:
            _show_progress(run, state, bar, local, loss)
        every = cfg.train.checkpoint_every_steps
        if every and state.step % every == 0 and state.step < total:
            merge_accum(run, state, local)
            save_checkpoint(run, state, optimizer, scheduler, scaler)
        for hook in STEP_HOOKS:
            hook(state)
        tick = time.perf_counter()
    bar.close()
    merge_accum(run, state, local)
    return epoch_metrics(run, state)


def train_step(
    run: Run,
    state: StageState,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: Tensor,
    labels: Tensor,
) -> tuple[Tensor, dict[str, Any]]:
    """One optimisation step of the stage on a batch from the loader: its loss and the parts of it."""
    images, labels = stage_batch(run, state.stage, images, labels)
    if state.stage == "localizer":
        loss, parts = localizer_loss(run, net, images)
    else:
        loss, parts = classifier_loss(run, net, images, labels)
    check_finite(run, loss, state)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, parts


def _add_batch(local: dict[str, float], loss: Tensor, parts: dict[str, Any], n: float) -> None:
    """Add one batch's sums (loss, cross-entropy, L_e, correct, images) to this process's running sums."""
    local["loss"] += loss.item() * n
    local["ce"] += float(parts.get("ce", 0.0)) * n
    local["le"] += float(parts.get("le", 0.0)) * n
    local["correct"] += float(parts.get("correct", 0.0))
    local["n"] += n


def _progress_bar(run: Run, state: StageState, loader: DataLoader, total: int) -> Any:
    s_cfg = getattr(run.cfg.stages, state.stage)
    return tqdm(
        loader,
        total=total,
        initial=state.step,
        desc=f"{state.stage} {state.epoch + 1}/{s_cfg.epochs}",
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        disable=None if (run.main and run.cfg.train.progress) else True,
    )


def _show_progress(run: Run, state: StageState, bar: Any, local: dict[str, float], loss: Tensor) -> None:
    seen = state.accum.get("n", 0.0) + local["n"] * run.dist.world_size
    spent = state.accum.get("time", 0.0) + local["time"]
    post = {"loss": f"{loss.item():.4f}", "img/s": f"{seen / max(spent, 1e-9):.1f}"}
    if state.stage != "localizer":
        post["acc"] = f"{local['correct'] / max(local['n'], 1):.3f}"
    bar.set_postfix(post, refresh=False)


def epoch_metrics(run: Run, state: StageState) -> dict[str, float]:
    """The epoch's train metrics from the sums of all processes (``state.accum``)."""
    a = state.accum
    n = max(a.get("n", 0.0), 1.0)
    out = {"loss": a.get("loss", 0.0) / n, "images_per_s": a.get("n", 0.0) / max(a.get("time", 0.0), 1e-9)}
    if state.stage != "localizer":
        out.update(ce=a.get("ce", 0.0) / n, acc=a.get("correct", 0.0) / n)
        if run.criterion is not None:
            out["le"] = a.get("le", 0.0) / n
    out["time_s"] = a.get("time", 0.0)
    return out


def merge_accum(run: Run, state: StageState, local: dict[str, float]) -> None:
    """Add this process's sums since the last merge, summed over processes, to ``state.accum``."""
    keys = sorted(local)
    summed = D.all_reduce_sum(torch.tensor([local[k] for k in keys], dtype=torch.float64), run.dist)
    for k, v in zip(keys, summed.tolist()):
        # the time is the same wall clock on every process: keep rank-averaged
        state.accum[k] = state.accum.get(k, 0.0) + (v / run.dist.world_size if k == "time" else v)
        local[k] = 0.0


def check_finite(run: Run, loss: Tensor, state: StageState) -> None:
    """NaN guard: stop with the stage, epoch and step named (on every process at once under DDP)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).item() else 1.0])
    if D.all_reduce_sum(bad, run.dist).item() > 0:
        raise TrainingError(
            f"non-finite loss ({loss.item()}) in stage {state.stage!r}, epoch {state.epoch + 1}, "
            f"step {state.step + 1}: lower the learning rate (stages.{state.stage}.lr), check the data, "
            "or use train.amp=none"
        )
