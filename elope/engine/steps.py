"""One training batch of the recipe: to the device (and, in the crop stages, cropped), and its loss.

The classifier's loss is L = L_CE + λ L_e (Eq. 1) with the class-mean loss on the batch gathered from all
processes; the localization module's is the smooth L1 to the frozen classifier's mean heatmap (Sec. 5).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elope.data.source import SourceBatch, render_sources
from elope.engine import distributed as D
from elope.engine.context import Run
from elope.engine.stages import stage_input_size, uses_crops
from elope.nn.localization import heatmap_loss, mean_heatmap
from elope.nn.model import ELoPE

__all__ = ["autocast", "classifier_loss", "localizer_loss", "localizer_target", "stage_batch", "to_device"]


def autocast(run: Run) -> Any:
    amp = run.cfg.train.amp
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp, torch.float32)
    return torch.autocast(run.device.type, dtype=dtype, enabled=amp != "none")


def to_device(run: Run, images: Tensor) -> Tensor:
    images = images.to(run.device, non_blocking=True)
    if run.cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def stage_batch(run: Run, stage: str, images: Tensor | SourceBatch, labels: Tensor) -> tuple[Tensor, Tensor]:
    """A training batch as the stage's network reads it: on the device and, in the stages that classify
    crops, cut by the frozen localization module from the crop source (:meth:`elope.ELoPE.crop`, the one
    crop path of the package, at the model's τ)."""
    if isinstance(images, SourceBatch):  # a crop stage's uint8 originals: resized and coloured here
        images = render_sources(images, stage_input_size(run, stage), run.device)
    images, labels = to_device(run, images), labels.to(run.device)
    if uses_crops(run, stage):
        images, _, _ = run.model.crop(images)
        if run.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def classifier_loss(
    run: Run, net: nn.Module, images: Tensor, labels: Tensor
) -> tuple[Tensor, dict[str, Any]]:
    """L = L_CE + λ L_e (Eq. 1). L_e runs on the global batch gathered from all processes."""
    with autocast(run):
        logits, emb = net(images, return_embeddings=True)
    ce = F.cross_entropy(logits.float(), labels)
    parts = {"ce": ce.detach(), "correct": (logits.argmax(1) == labels).sum()}
    loss = ce
    if run.criterion is not None:
        all_emb = D.all_gather_with_grad(emb.float(), run.dist)
        all_labels = D.all_gather_tensor(labels, run.dist)
        le = run.criterion(all_emb, all_labels)
        loss = ce + run.cfg.loss.lambda_ * le
        parts["le"] = le.detach()
    return loss, parts


def localizer_target(model: ELoPE, images: Tensor, size: tuple[int, int]) -> Tensor:
    """The mean heatmap of the frozen classifier (Sec. 5), resized to the module's output if needed."""
    with torch.no_grad():
        target = mean_heatmap(model.forward_features(images)).float()
    if tuple(target.shape[-2:]) != tuple(size):
        target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
    return target


def localizer_loss(run: Run, net: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, Any]]:
    with autocast(run):
        pred = net(images)
        target = localizer_target(run.model, images, tuple(pred.shape[-2:]))
    return heatmap_loss(pred, target, run.cfg.loss.localizer_target), {}
