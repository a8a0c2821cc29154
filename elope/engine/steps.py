"""One training step of the recipe, top to bottom: :func:`train_step`.

The batch goes to the device and, in the stages that classify crops, through the frozen localization
module (:func:`stage_batch`: :func:`elope.data.source.render_sources`, then :meth:`elope.ELoPE.crop`); its
loss is L = L_CE + λ L_e (Eq. 1) with the class-mean loss on the batch gathered from all processes
(:func:`classifier_loss`), or, in stage 2, the smooth L1 to the frozen classifier's mean heatmap
(:func:`localizer_loss`, Sec. 5); then the NaN guard, backward and the SGD step. Everything the step needs
comes in as arguments (what it trains with: a :class:`Learner`); what the stage is, is its
:class:`elope.engine.plan.StagePlan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elope.data.source import SourceBatch, render_sources
from elope.engine import distributed as D
from elope.engine.plan import StagePlan
from elope.engine.stage_state import StageState
from elope.failures import TrainingError
from elope.nn.localization import heatmap_loss, mean_heatmap
from elope.nn.losses import EmbeddingLoss
from elope.nn.model import ELoPE

__all__ = [
    "Learner",
    "check_finite",
    "classifier_loss",
    "localizer_loss",
    "localizer_target",
    "stage_batch",
    "to_device",
    "train_step",
]


@dataclass(frozen=True)
class Learner:
    """What a stage's steps train with, made once per stage (``engine/train.py: run_stage``).

    ``model`` is the whole model (its frozen localization module crops, its frozen classifier is the
    localizer's teacher); ``net`` is what the stage trains (the model or its localization module, wrapped
    for DDP); ``criterion`` the class-mean loss (None for ``loss.variant: none``); the optimiser, the
    gradient scaler and the processes.
    """

    model: ELoPE
    net: nn.Module
    criterion: EmbeddingLoss | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dist: D.DistInfo


def train_step(
    learner: Learner, batch: tuple[Tensor | SourceBatch, Tensor], plan: StagePlan, state: StageState
) -> tuple[Tensor, dict[str, Any]]:
    """One optimisation step of the stage on a batch from its loader: the loss and its parts."""
    model, net, criterion, optimizer, scaler, dist = (
        learner.model, learner.net, learner.criterion, learner.optimizer, learner.scaler, learner.dist
    )  # fmt: skip
    images, labels = stage_batch(model, *batch, plan)
    if plan.stage == "localizer":
        loss, parts = localizer_loss(model, net, images, plan)
    else:
        loss, parts = classifier_loss(net, criterion, images, labels, plan, dist)
    check_finite(loss, state, dist)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, parts


def to_device(images: Tensor, plan: StagePlan) -> Tensor:
    images = images.to(plan.device, non_blocking=True)
    if plan.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def stage_batch(
    model: ELoPE, images: Tensor | SourceBatch, labels: Tensor, plan: StagePlan
) -> tuple[Tensor, Tensor]:
    """A training batch as the stage's network reads it: on the device and, in the stages that classify
    crops, cut by the frozen localization module from the crop source (:meth:`elope.ELoPE.crop`, at the
    model's spec)."""
    if isinstance(images, SourceBatch):  # a crop stage's uint8 originals: resized and coloured here
        images = render_sources(images, plan.input_size, plan.device)
    images, labels = to_device(images, plan), labels.to(plan.device)
    if plan.crops:
        images, _, _ = model.crop(images)
        if plan.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def classifier_loss(
    net: nn.Module,
    criterion: EmbeddingLoss | None,
    images: Tensor,
    labels: Tensor,
    plan: StagePlan,
    dist: D.DistInfo,
) -> tuple[Tensor, dict[str, Any]]:
    """L = L_CE + λ L_e (Eq. 1). L_e runs on the global batch gathered from all processes; the
    cross-entropy is weighted by class with ``loss.class_weights`` (``plan.class_weights``,
    :mod:`elope.engine.balance`)."""
    with plan.autocast():
        logits, emb = net(images, return_embeddings=True)
    ce = F.cross_entropy(logits.float(), labels, weight=plan.class_weights)
    parts = {"ce": ce.detach(), "correct": (logits.argmax(1) == labels).sum()}
    loss = ce
    if criterion is not None:
        all_emb = D.all_gather_with_grad(emb.float(), dist)
        all_labels = D.all_gather_tensor(labels, dist)
        le = criterion(all_emb, all_labels)
        loss = ce + plan.loss_weight * le
        parts["le"] = le.detach()
    return loss, parts


def localizer_target(model: ELoPE, images: Tensor, size: tuple[int, int]) -> Tensor:
    """The mean heatmap of the frozen classifier (Sec. 5), resized to the module's output if needed."""
    with torch.no_grad():
        target = mean_heatmap(model.forward_features(images)).float()
    if tuple(target.shape[-2:]) != tuple(size):
        target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
    return target


def localizer_loss(
    model: ELoPE, net: nn.Module, images: Tensor, plan: StagePlan
) -> tuple[Tensor, dict[str, Any]]:
    """Stage 2's smooth L1 between the module's heatmap and the frozen classifier's (Fig. 3)."""
    with plan.autocast():
        pred = net(images)
        target = localizer_target(model, images, tuple(pred.shape[-2:]))
    return heatmap_loss(pred, target, plan.heatmap_target), {}


def check_finite(loss: Tensor, state: StageState, dist: D.DistInfo) -> None:
    """NaN guard: stop with the stage, epoch and step named (on every process at once under DDP)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).item() else 1.0])
    if D.all_reduce_sum(bad, dist).item() > 0:
        raise TrainingError(
            f"non-finite loss ({loss.item()}) in stage {state.stage!r}, epoch {state.epoch + 1}, "
            f"step {state.step + 1}: lower the learning rate (stages.{state.stage}.lr), check the data, "
            "or use train.amp=none"
        )
