"""The epoch loop of ``elope train``: the seeded, resumable data order, one step after the other
(:func:`elope.engine.steps.train_step`), the running sums of all processes and the mid-epoch checkpoints.

:func:`train_one_epoch` takes what it works with as arguments, as ``train_one_epoch(model, criterion,
optimizer, data_loader, device, ...)`` does in torchvision's references: what it trains with (the
:class:`elope.engine.steps.Learner`: the model, what the stage trains, the loss, the optimiser, the scaler,
the processes), the loader, the stage's plan and position, and the callables it calls back (the
checkpoint writer, step hooks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from elope.data.source import SourceCollate
from elope.data.workers import usable_workers
from elope.engine import distributed as D
from elope.engine.plan import LoaderSettings, StagePlan
from elope.engine.run import RunData
from elope.engine.sampling import EpochSampler, SeededItems, ShardSampler
from elope.engine.stage_state import StageState
from elope.engine.steps import Learner, train_step
from elope.evaluation.loop import iterate
from elope.evaluation.model_predictor import ModelPredictor
from elope.evaluation.outputs import BatchOutputs, Want
from elope.failures import TrainingError
from elope.nn.losses import check_label_range
from elope.nn.model import ELoPE

__all__ = [
    "StepHook",
    "check_labels",
    "epoch_metrics",
    "evaluation_pass",
    "make_loader",
    "merge_accum",
    "stage_loader",
    "train_one_epoch",
]

#: Called after every training step with the stage's state (``stage``, ``epoch``, ``step`` just done):
#: what ``run_training(..., hooks=...)`` passes down (tests/kill_at_step.py kills the process at a step).
StepHook = Callable[[StageState], None]


def make_loader(
    dataset: Any,
    batch: int,
    settings: LoaderSettings,
    *,
    epoch: int,
    shuffle: bool,
    skip: int = 0,
    collate: Any = None,
) -> DataLoader:
    """A loader over ``dataset`` in the run's seeded order (:class:`elope.engine.sampling.EpochSampler`; a
    shard set's training order: :class:`elope.engine.sampling.ShardSampler`): ``batch`` is the global batch
    when shuffling (training), the per-process batch otherwise."""
    order = dict(seed=settings.seed, epoch=epoch, rank=settings.rank, world_size=settings.world_size)
    shard_of = getattr(dataset, "shard_of", None)  # a shard set: each process reads its own shards
    if shard_of is not None and shuffle and not settings.balanced:
        sampler: EpochSampler = ShardSampler(
            shard_of, batch, **order, skip_batches=skip, streams=settings.streams
        )
    else:
        balanced = dataset.targets if settings.balanced and shuffle else None
        sampler = EpochSampler(
            len(dataset), batch, **order, shuffle=shuffle, skip_batches=skip, labels=balanced
        )
    return DataLoader(
        SeededItems(dataset, settings.seed),
        batch_size=sampler.local_batch,
        sampler=sampler,
        num_workers=usable_workers(settings.workers),  # at most the cores there are
        pin_memory=settings.pin_memory,
        generator=torch.Generator(),  # keeps the DataLoader off the global RNG
        collate_fn=collate,
    )


def stage_loader(data: RunData, plan: StagePlan, state: StageState) -> DataLoader:
    """The stage's training loader for epoch ``state.epoch`` from batch ``state.step`` on. The crop stages
    read uint8 originals (:mod:`elope.data.source`), resized and coloured on the device, or in the workers
    on a CPU run."""
    train_set = data.get("train", plan.input_size, source=plan.crops)
    collate = SourceCollate(plan.input_size, render=plan.device.type == "cpu") if plan.crops else None
    return make_loader(
        train_set,
        plan.settings.batch_size,
        plan.loader,
        epoch=state.epoch,
        shuffle=True,
        skip=state.step,
        collate=collate,
    )


def train_one_epoch(
    learner: Learner,
    loader: DataLoader,
    plan: StagePlan,
    state: StageState,
    *,
    checkpoint: Callable[[], None],
    hooks: Sequence[StepHook] = (),
) -> dict[str, float]:
    """Train epoch ``state.epoch`` from batch ``state.step`` on with ``learner`` (model, what the stage
    trains, loss, optimiser, scaler, processes); returns the epoch's train metrics.

    ``checkpoint`` writes ``last.pt``: called every ``plan.checkpoint_every`` steps (the epoch's sums merged
    into ``state`` first) so a kill loses little; ``hooks`` are called after every step.
    """
    dist = learner.dist
    local = {"loss": 0.0, "ce": 0.0, "le": 0.0, "correct": 0.0, "n": 0.0, "time": 0.0}
    bar = _progress_bar(plan, state, loader)
    tick = time.perf_counter()
    for images, labels, _boxes in bar:
        check_labels(labels, learner.model.num_classes)
        batch = (images, labels)
        loss, parts = train_step(learner, batch, plan, state)
        _add_batch(local, loss, parts, float(labels.shape[0]))
        now = time.perf_counter()
        local["time"] += now - tick
        state.step += 1
        if plan.progress:
            _show_progress(plan, state, bar, local, loss)
        every = plan.checkpoint_every
        if every and state.step % every == 0 and state.step < plan.steps:
            merge_accum(state, local, dist)
            checkpoint()
        for hook in hooks:
            hook(state)
        tick = time.perf_counter()
    bar.close()
    merge_accum(state, local, dist)
    return epoch_metrics(state, with_le=learner.criterion is not None)


def _add_batch(local: dict[str, float], loss: Tensor, parts: dict[str, Any], n: float) -> None:
    """Add one batch's sums (loss, cross-entropy, L_e, correct, images) to this process's running sums."""
    local["loss"] += loss.item() * n
    local["ce"] += float(parts.get("ce", 0.0)) * n
    local["le"] += float(parts.get("le", 0.0)) * n
    local["correct"] += float(parts.get("correct", 0.0))
    local["n"] += n


def evaluation_pass(
    model: ELoPE, loader: DataLoader, plan: StagePlan, desc: str, want: Want
) -> Iterator[tuple[list[Any], BatchOutputs | None]]:
    """A pass that trains nothing (validation, the check at the end of stage 2) through the one loop
    (:func:`elope.evaluation.loop.iterate`): the model at the stage's device, memory layout and precision,
    without gradients (a model still training: no inference tensors), and a progress bar on standard
    error, which takes minutes on a CPU: shown like the training bar, on the main process with
    ``train.progress`` and only on a terminal; gone when the pass ends."""
    predictor = ModelPredictor(
        model, [], autocast=plan.autocast, grad_mode=torch.no_grad, channels_last=plan.channels_last
    )
    return iterate(predictor, loader, want, progress=desc if plan.progress else None, leave=False)


def _progress_bar(plan: StagePlan, state: StageState, loader: DataLoader) -> Any:
    return tqdm(
        loader,
        total=plan.steps,
        initial=state.step,
        desc=f"{state.stage} {state.epoch + 1}/{plan.settings.epochs}",
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        disable=None if plan.progress else True,
    )


def _show_progress(
    plan: StagePlan, state: StageState, bar: Any, local: dict[str, float], loss: Tensor
) -> None:
    seen = state.accum.get("n", 0.0) + local["n"] * plan.loader.world_size
    spent = state.accum.get("time", 0.0) + local["time"]
    post = {"loss": f"{loss.item():.4f}", "img/s": f"{seen / max(spent, 1e-9):.1f}"}
    if state.stage != "localizer":
        post["acc"] = f"{local['correct'] / max(local['n'], 1):.3f}"
    bar.set_postfix(post, refresh=False)


def epoch_metrics(state: StageState, *, with_le: bool) -> dict[str, float]:
    """The epoch's train metrics from the sums of all processes (``state.accum``); ``with_le``: the run
    has a class-mean loss."""
    a = state.accum
    n = max(a.get("n", 0.0), 1.0)
    out = {"loss": a.get("loss", 0.0) / n, "images_per_s": a.get("n", 0.0) / max(a.get("time", 0.0), 1e-9)}
    if state.stage != "localizer":
        out.update(ce=a.get("ce", 0.0) / n, acc=a.get("correct", 0.0) / n)
        if with_le:
            out["le"] = a.get("le", 0.0) / n
    out["time_s"] = a.get("time", 0.0)
    return out


def merge_accum(state: StageState, local: dict[str, float], dist: D.DistInfo) -> None:
    """Add this process's sums since the last merge, summed over processes, to ``state.accum``."""
    keys = sorted(local)
    summed = D.all_reduce_sum(torch.tensor([local[k] for k in keys], dtype=torch.float64), dist)
    for k, v in zip(keys, summed.tolist()):
        # the time is the same wall clock on every process: keep rank-averaged
        state.accum[k] = state.accum.get(k, 0.0) + (v / dist.world_size if k == "time" else v)
        local[k] = 0.0


def check_labels(labels: Tensor, num_classes: int) -> None:
    """Labels must index a class (:func:`elope.nn.losses.check_label_range`); checked on the CPU tensor the
    loader yields (no device synchronisation), so an out-of-range label is a clear error instead of a CUDA
    scatter assertion."""
    try:
        check_label_range(labels, num_classes)
    except ValueError as error:
        raise TrainingError(f"{error}: the dataset's class list and its labels disagree") from None
