"""The stage plan: everything one stage of the recipe needs, worked out once before the stage starts.

Which images the stage reads (whole images at the classifier's side, or the crop source that the frozen
localization module crops, Sec. 5), its batch and number of steps, mixed precision, memory format, the
loss weight λ of Eq. (1), the localizer's target and how the data loaders are set up. The epoch loop
(:func:`elope.engine.loop.train_one_epoch`), the step (:mod:`elope.engine.steps`) and validation
(:mod:`elope.engine.validate`) read the plan; none of them looks at the recipe or the run again.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from elope.config import StageConfig
from elope.engine.balance import class_weights
from elope.engine.run import Run

__all__ = ["LoaderSettings", "StagePlan", "autocast", "plan_stage"]

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoaderSettings:
    """How every data loader of the run is set up (``elope.engine.loop.make_loader``)."""

    seed: int  # train.seed: the data order of epoch e and each item's augmentation (engine/sampling.py)
    workers: int  # dataset.num_workers
    pin_memory: bool  # on a GPU
    rank: int  # this process ...
    world_size: int  # ... of that many
    balanced: bool = False  # train.sampler == "balanced": class-balanced draws (engine/sampling.py)
    streams: int = 0  # dataset.shard_streams: a shard set's streams (0: one per process; engine/sampling.py)


@dataclass(frozen=True)
class StagePlan:
    """One stage of the recipe as the loop runs it."""

    stage: str
    settings: StageConfig  # epochs, global batch, lr schedule (stages.<stage>)
    crops: bool  # the stage classifies crops cut by the frozen localization module (crop, weighted)
    input_size: int  # side of the images its loaders yield: the crop source (crops) or the classifier's
    steps: int  # optimiser steps per epoch (whole global batches of the training split)
    device: torch.device
    amp: torch.dtype | None  # autocast dtype (train.amp), None: float32
    channels_last: bool
    loss_weight: float  # λ of Eq. (1) (loss.lambda)
    heatmap_target: str  # the localizer's smooth-L1 target (loss.localizer_target)
    checkpoint_every: int  # steps between mid-epoch checkpoints (0: only at the end of an epoch)
    progress: bool  # show a progress bar (the main process with train.progress)
    loader: LoaderSettings
    class_weights: Tensor | None = None  # the cross-entropy's per-class weights (loss.class_weights)

    @property
    def local_batch(self) -> int:
        """Images per step on this process."""
        return self.settings.batch_size // self.loader.world_size

    def autocast(self) -> AbstractContextManager[object]:
        """Mixed precision for the forward passes of the stage (off: float32)."""
        return autocast(self.device, self.amp)


def autocast(device: torch.device, amp: torch.dtype | None) -> AbstractContextManager[object]:
    """``torch.autocast`` on ``device`` to ``amp``; disabled (float32) when ``amp`` is None."""
    return torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)


def plan_stage(run: Run, stage: str) -> StagePlan:
    """The plan of ``stage`` for this run: its structural changes (``begin_stage``) may come before or after,
    the plan depends on the recipe, the processes, the completed stages and the model's spec only."""
    cfg = run.cfg
    settings: StageConfig = getattr(cfg.stages, stage)
    crops = stage in ("crop", "weighted") and run.localized  # without a trained module: whole images
    spec = run.model.spec
    return StagePlan(
        stage=stage,
        settings=settings,
        crops=crops,
        input_size=spec.crop_source if crops else spec.image_size,
        steps=len(run.train_set) // settings.batch_size,
        device=run.device,
        amp=_AMP.get(cfg.train.amp),
        channels_last=cfg.train.channels_last,
        loss_weight=cfg.loss.lambda_,
        heatmap_target=cfg.loss.localizer_target,
        checkpoint_every=cfg.train.checkpoint_every_steps,
        progress=run.main and cfg.train.progress,
        loader=LoaderSettings(
            seed=cfg.train.seed,
            workers=cfg.dataset.num_workers,
            pin_memory=run.device.type == "cuda",
            rank=run.dist.rank,
            world_size=run.dist.world_size,
            balanced=cfg.train.sampler == "balanced",
            streams=cfg.dataset.shard_streams,
        ),
        class_weights=_weights(
            class_weights(run.train_set.targets, run.model.num_classes, cfg.loss.class_weights), run
        ),
    )


def _weights(weights: Tensor | None, run: Run) -> Tensor | None:
    """The class weights on the run's device."""
    return None if weights is None else weights.to(run.device)
