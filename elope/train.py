"""``elope train``: the four stages of the ELoPE recipe (Hanselmann & Ney, WACV 2020).

1. ``classifier``: backbone + k-max pooling + embedding + classifier on full images with
   L = L_CE + λ L_e (Eq. 1); L_e is the class-mean loss of Eqs. (5)-(10).
2. ``localizer``: everything else frozen (eval mode); the localization module, initialised from the
   trained stem and first stage, regresses the channel mean of the classifier's last feature map with the
   smooth L1 loss (Sec. 5, Fig. 3). When that map is not the size of the module's output (inputs other
   than 448 px: e.g. 2×2 at 64 px vs 14×14), the target is resized bilinearly to the module's output.
3. ``crop``: the classifier trained on crops: each (augmented) training image goes through the frozen
   localization module, is cut at its box (threshold τ, Table 2) and resized to the input size, then
   L = L_CE + λ L_e as in stage 1. The crop is cut from the *crop source*, the augmented original resized
   to ``dataset.crop_source`` (2 × ``image_size`` by default), by :meth:`elope.ELoPE.crop`, the one crop
   path that ``evaluate`` and ``predict`` use too. The workers ship that original in uint8 with its colour
   augmentation drawn; the device resizes and colours it (:mod:`elope.data.source`). How the stage starts is ``stages.crop.init``:
   ``fresh`` (the paper recipes, following the authors' release: ``elope.lua`` builds the model with a
   localization module from the ImageNet backbone, ``setupModel.lua`` lines 67-108, with new class means,
   lines 5-14) re-initialises backbone, embedding, classifier and class means as at the start of stage 1,
   so stage 1 only teaches the localization module; ``continue`` keeps the stage-1 weights and means.
4. ``weighted``: the learned weights of Eq. (4) switched on (starting at ones, so nothing changes at
   first), everything but the localization module finetuned, on crops when the localization module was
   trained in this run and on full images otherwise.

Hyper-parameters are those of Sec. 6 and Table 2 (``elope/configs/*.yaml``). The paper's models train
on the whole training split (``trainval``; FGVC-Aircraft: train + val) and keep the last epoch
(``dataset.val_fraction: 0``, ``train.select: last``). With ``dataset.val_fraction > 0`` a validation
split is held out (the paper did so only to tune hyper-parameters, Sec. 6), the model is evaluated on it
after every epoch (top-1 of the pipeline the stage trains; for the localizer the smooth L1 loss) and,
with ``train.select: best``, the best epoch's weights and class means are the stage's result. The
classifier of stage 1 is kept in ``RUN/teacher`` (the localization module's teacher: Table 4's "mean
feature map" row). The test split is never loaded here.

Run folder (``docs/architecture.md``): ``config.yaml``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/<stage>.pt`` and ``checkpoints/last.pt`` (atomic), ``model/`` (model.safetensors,
model.json, class_means.safetensors). ``--resume`` continues from ``checkpoints/last.pt`` (see
``elope.checkpoint`` and ``elope.sampling`` for what makes it exact).
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from elope import distributed as D
from elope.checkpoint import (
    FORMAT,
    CheckpointError,
    atomic_save,
    check_model_config,
    load_state_strict,
    rng_state,
    set_rng_state,
)
from elope.config import DATASETS, STAGES, Config, ConfigError, StageConfig, load_config
from elope.data.source import SourceBatch, SourceCollate, render_sources
from elope.sampling import EpochSampler, SeededItems

TEACHER_DIR = "teacher"  # RUN/teacher: the stage-1 classifier, the localization module's teacher

# Stages each stage needs to have been completed before it (in this run folder).
REQUIRES = {
    "classifier": (),
    "localizer": ("classifier",),
    "crop": ("localizer",),
    "weighted": ("classifier",),
}


class TrainingError(RuntimeError):
    """A problem the user can act on (bad data, non-finite loss, inconsistent run folder)."""


# ------------------------------------------------------------------------------------------- run context
@dataclass
class Run:
    """Everything the stages share."""

    cfg: Config
    out: Path
    device: torch.device
    dist: D.DistInfo
    model: Any  # elope.model.ELoPE
    criterion: nn.Module | None  # elope.embedding.ClassMeanLoss, None for loss.variant "none"
    data: RunData
    classes: list[str]
    completed: list[str] = field(default_factory=list)
    metrics_lines: int = 0
    writer: Any = None

    @property
    def main(self) -> bool:
        return self.dist.is_main

    @property
    def localized(self) -> bool:
        """Whether the localization module has been trained (crop stages then classify crops)."""
        return "localizer" in self.completed

    @property
    def train_set(self) -> Any:
        """The training split at the classifier's input size (its length is every stage's)."""
        return self.data.get("train", self.cfg.dataset.image_size)


@dataclass
class RunData:
    """The run's training and validation splits, each built once per input size it is needed at.

    Stages that classify whole images (and the localizer's stage) read them at ``image_size``; stages
    that classify crops read the crop source (:func:`elope.data.crop_source_size`).
    """

    cfg: Config
    splits: dict[str, str | None]  # "train" / "val" -> the dataset split used (None: no validation)
    built: dict[tuple[str, int, bool], Any] = field(default_factory=dict)

    def get(self, role: str, size: int, *, source: bool = False) -> Any:
        """The split of ``role`` read at ``size``; ``source=True`` (training crop stages) yields uint8
        :class:`elope.data.source.SourceImage` items, rendered on the device by :func:`render_sources`."""
        from elope.data import build_dataset
        from elope.data.source import source_transform
        from elope.data.transforms import eval_transform, train_transform

        split = self.splits[role]
        if split is None:
            return None
        key = (role, size, source)
        if key not in self.built:
            d = self.cfg.dataset
            mean, std = normalization(self.cfg)
            augment = {
                "rotation": d.augment.rotation,
                "jitter": d.augment.jitter,
                "lighting": d.augment.lighting,
            }
            if source:
                transform = source_transform(size, **augment, mean=mean, std=std)
            elif role == "train":
                transform = train_transform(size, **augment, mean=mean, std=std)
            else:
                transform = eval_transform(size, mean, std)
            self.built[key] = build_dataset(
                d.name, d.root, split, transform=transform, **dataset_options(self.cfg)
            )
        return self.built[key]

    def sizes(self) -> dict[str, dict[str, Any] | None]:
        """Split name and image count of each role (recorded in ``model.json`` and ``metrics.jsonl``)."""
        size = self.cfg.dataset.image_size
        return {
            role: None if split is None else {"split": split, "images": len(self.get(role, size))}
            for role, split in self.splits.items()
        }


def normalization(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` the backbone's initial weights expect (ImageNet's for ResNets, 0.5/0.5 for the
    EfficientNet-Lite weights); recorded in ``model.json`` so ``evaluate`` and ``predict`` use it too."""
    from elope.pretrained import pretrained_normalization

    return pretrained_normalization(cfg.model.backbone)


def dataset_options(cfg: Config) -> dict[str, Any]:
    """``build_dataset`` options of a recipe: ``dataset.options`` plus the validation share."""
    options = dict(cfg.dataset.options)
    if cfg.dataset.val_fraction > 0:
        options["val_fraction"] = cfg.dataset.val_fraction
    return options


def run_splits(cfg: Config) -> dict[str, str | None]:
    """``trainval`` without validation (the paper's models); ``train``/``val`` with ``val_fraction > 0``."""
    if cfg.dataset.val_fraction > 0:
        return {"train": "train", "val": "val"}
    return {"train": "trainval", "val": None}


@dataclass
class StageState:
    """Position inside a stage plus what the epoch has summed so far (all processes together)."""

    stage: str
    epoch: int = 0  # epochs finished
    step: int = 0  # local batches done inside ``epoch``
    best: dict[str, Any] | None = None  # {"score", "epoch", "model", "criterion"}
    accum: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helpers
def resolve_device(name: str, dist: D.DistInfo) -> torch.device:
    """``auto`` → the process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else dist.local_rank
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def set_train_mode(run: Run, stage: str) -> None:
    """Modes and ``requires_grad`` of a stage: only what the stage trains is in train mode and trainable."""
    model = run.model
    train_localizer = stage == "localizer"
    model.train(not train_localizer)
    for p in model.parameters():
        p.requires_grad_(not train_localizer)
    if model.localizer is not None:
        model.localizer.train(train_localizer)
        for p in model.localizer.parameters():
            p.requires_grad_(train_localizer)
    if run.criterion is not None:
        run.criterion.train(not train_localizer)
    if run.cfg.train.freeze_bn:
        for m in model.modules():
            if _is_bn(m):
                m.eval()


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params: list[nn.Parameter], s: StageConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay on every trained parameter (Sec. 6)."""
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, s: StageConfig) -> torch.optim.lr_scheduler.StepLR:
    """lr × ``lr_decay`` every ``lr_step`` epochs (Sec. 6: ÷10 every 30 epochs)."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=s.lr_step, gamma=s.lr_decay)


def _autocast(run: Run) -> Any:
    amp = run.cfg.train.amp
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp, torch.float32)
    return torch.autocast(run.device.type, dtype=dtype, enabled=amp != "none")


def _to_device(run: Run, images: Tensor) -> Tensor:
    images = images.to(run.device, non_blocking=True)
    if run.cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _clone_state(module: nn.Module) -> OrderedDict[str, Tensor]:
    return OrderedDict((k, v.detach().clone().cpu()) for k, v in module.state_dict().items())


def _uses_crops(run: Run, stage: str) -> bool:
    return stage in ("crop", "weighted") and run.localized


def stage_input_size(run: Run, stage: str) -> int:
    """Side of the images a stage reads: the crop source when it classifies crops, else ``image_size``."""
    from elope.data.transforms import crop_source_size

    d = run.cfg.dataset
    return crop_source_size(d.image_size, d.crop_source) if _uses_crops(run, stage) else d.image_size


def check_labels(labels: Tensor, num_classes: int) -> None:
    """Labels must index a class; checked on the CPU tensor the loader yields (no device synchronisation),
    so an out-of-range label is a clear error instead of a CUDA scatter assertion."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise TrainingError(
            f"a label lies outside [0, {num_classes - 1}] (got {int(labels.min())}..{int(labels.max())}): "
            "the dataset's class list and its labels disagree"
        )


def _maybe_kill_for_test(stage: str, epoch: int, step: int) -> None:
    """``ELOPE_TEST_KILL_AT_STEP=stage:epoch:step`` SIGKILLs this process after that step (resume tests)."""
    target = os.environ.get("ELOPE_TEST_KILL_AT_STEP")
    if target and target == f"{stage}:{epoch}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ data
def _loader(
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


def _batches_per_epoch(run: Run, batch: int) -> int:
    return len(run.train_set) // batch


# ---------------------------------------------------------------------------------------------- losses
def classifier_loss(
    run: Run, net: nn.Module, images: Tensor, labels: Tensor
) -> tuple[Tensor, dict[str, Any]]:
    """L = L_CE + λ L_e (Eq. 1). L_e runs on the global batch gathered from all processes."""
    with _autocast(run):
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


def localizer_target(model: Any, images: Tensor, size: tuple[int, int]) -> Tensor:
    """The mean heatmap of the frozen classifier (Sec. 5), resized to the module's output if needed."""
    from elope.localization import mean_heatmap

    with torch.no_grad():
        target = mean_heatmap(model.forward_features(images)).float()
    if tuple(target.shape[-2:]) != tuple(size):
        target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
    return target


def localizer_loss(run: Run, net: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, Any]]:
    from elope.localization import heatmap_loss

    with _autocast(run):
        pred = net(images)
        target = localizer_target(run.model, images, tuple(pred.shape[-2:]))
    return heatmap_loss(pred, target, run.cfg.loss.localizer_target), {}


# ------------------------------------------------------------------------------------------ one epoch
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
    from tqdm import tqdm

    cfg, stage = run.cfg, state.stage
    s_cfg = getattr(cfg.stages, stage)
    total = _batches_per_epoch(run, s_cfg.batch_size)
    crops, size = _uses_crops(run, stage), stage_input_size(run, stage)
    train_set = run.data.get("train", size, source=crops)
    # crop stages read uint8 originals, resized and coloured on the device (in the workers on a CPU run)
    collate = SourceCollate(size, render=run.device.type == "cpu") if crops else None
    loader = _loader(
        run, train_set, s_cfg.batch_size, epoch=state.epoch, shuffle=True, skip=state.step, collate=collate
    )
    local = {"loss": 0.0, "ce": 0.0, "le": 0.0, "correct": 0.0, "n": 0.0, "time": 0.0}
    bar = tqdm(
        loader,
        total=total,
        initial=state.step,
        desc=f"{stage} {state.epoch + 1}/{s_cfg.epochs}",
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        disable=None if (run.main and cfg.train.progress) else True,
    )
    tick = time.perf_counter()
    for images, labels, _boxes in bar:
        check_labels(labels, len(run.classes))
        if isinstance(images, SourceBatch):
            images = render_sources(images, size, run.device)
        images, labels = _to_device(run, images), labels.to(run.device)
        if crops:
            images, _, _ = run.model.crop(images, tau=cfg.model.tau)
            if cfg.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
        if stage == "localizer":
            loss, parts = localizer_loss(run, net, images)
        else:
            loss, parts = classifier_loss(run, net, images, labels)
        _check_finite(run, loss, state)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        n = float(labels.shape[0])
        local["loss"] += loss.item() * n
        local["ce"] += float(parts.get("ce", 0.0)) * n
        local["le"] += float(parts.get("le", 0.0)) * n
        local["correct"] += float(parts.get("correct", 0.0))
        local["n"] += n
        now = time.perf_counter()
        local["time"] += now - tick
        tick = now
        state.step += 1
        if run.main and cfg.train.progress:
            seen = state.accum.get("n", 0.0) + local["n"] * run.dist.world_size
            spent = state.accum.get("time", 0.0) + local["time"]
            post = {"loss": f"{loss.item():.4f}", "img/s": f"{seen / max(spent, 1e-9):.1f}"}
            if stage != "localizer":
                post["acc"] = f"{local['correct'] / max(local['n'], 1):.3f}"
            bar.set_postfix(post, refresh=False)
        every = cfg.train.checkpoint_every_steps
        if every and state.step % every == 0 and state.step < total:
            _merge_accum(run, state, local)
            save_checkpoint(run, state, optimizer, scheduler, scaler)
        _maybe_kill_for_test(stage, state.epoch, state.step)
        tick = time.perf_counter()
    bar.close()
    _merge_accum(run, state, local)
    a = state.accum
    n = max(a.get("n", 0.0), 1.0)
    out = {"loss": a.get("loss", 0.0) / n, "images_per_s": a.get("n", 0.0) / max(a.get("time", 0.0), 1e-9)}
    if stage != "localizer":
        out.update(ce=a.get("ce", 0.0) / n, acc=a.get("correct", 0.0) / n)
        if run.criterion is not None:
            out["le"] = a.get("le", 0.0) / n
    out["time_s"] = a.get("time", 0.0)
    return out


def _merge_accum(run: Run, state: StageState, local: dict[str, float]) -> None:
    """Add this process's sums since the last merge, summed over processes, to ``state.accum``."""
    keys = sorted(local)
    summed = D.all_reduce_sum(torch.tensor([local[k] for k in keys], dtype=torch.float64), run.dist)
    for k, v in zip(keys, summed.tolist()):
        # the time is the same wall clock on every process: keep rank-averaged
        state.accum[k] = state.accum.get(k, 0.0) + (v / run.dist.world_size if k == "time" else v)
        local[k] = 0.0


def _check_finite(run: Run, loss: Tensor, state: StageState) -> None:
    """NaN guard: stop with the stage, epoch and step named (on every process at once under DDP)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).item() else 1.0])
    if D.all_reduce_sum(bad, run.dist).item() > 0:
        raise TrainingError(
            f"non-finite loss ({loss.item()}) in stage {state.stage!r}, epoch {state.epoch + 1}, "
            f"step {state.step + 1}: lower the learning rate (stages.{state.stage}.lr), check the data, "
            "or use train.amp=none"
        )


# ------------------------------------------------------------------------------------------ validation
@torch.no_grad()
def evaluate_split(run: Run, stage: str, dataset: Any) -> dict[str, float]:
    """Validation metrics of the pipeline ``stage`` trains, summed over processes.

    classifier/crop/weighted: ``top1`` (softmax) and ``loss`` (cross-entropy), on crops when the stage
    trains on crops; localizer: ``loss`` (smooth L1 to the mean heatmap). ``loc_iou50`` (share of boxes
    with IoU ≥ 0.5, Table 4) when the localization module is trained and the data have boxes.
    """
    from elope.evaluate import iou_hits
    from elope.localization import heatmap_loss, heatmap_to_box

    model, cfg = run.model, run.cfg
    was = {m: m.training for m in model.modules()}
    model.eval()
    batch = max(1, getattr(cfg.stages, stage).batch_size // run.dist.world_size)
    loader = _loader(run, dataset, batch, epoch=0, shuffle=False)
    sums = torch.zeros(5, dtype=torch.float64)  # loss*n, correct, n, iou hits, boxes
    for images, labels, gt in loader:
        images, labels = _to_device(run, images), labels.to(run.device)
        n, boxes, correct = labels.shape[0], None, 0
        with _autocast(run):
            if stage == "localizer":
                heat = model.localizer(images).float()
                target = localizer_target(model, images, tuple(heat.shape[-2:]))
                loss = heatmap_loss(heat, target, cfg.loss.localizer_target)
                boxes = heatmap_to_box(
                    heat, cfg.model.tau, tuple(images.shape[-2:]), upsample=cfg.model.heatmap_upsample
                )
            else:
                inputs = images
                if _uses_crops(run, stage):
                    inputs, boxes, _ = model.crop(images, tau=cfg.model.tau)
                logits = model(inputs).float()
                loss = F.cross_entropy(logits, labels)
                correct = int((logits.argmax(1) == labels).sum())
        sums[:3] += torch.tensor([float(loss) * n, correct, n], dtype=torch.float64)
        if boxes is not None:
            hits, has = iou_hits(boxes.cpu(), gt)
            sums[3:] += torch.tensor([float(hits.sum()), float(has.sum())], dtype=torch.float64)
    for m, mode in was.items():
        m.train(mode)
    sums = D.all_reduce_sum(sums, run.dist)
    n = max(float(sums[2]), 1.0)
    out = {"loss": float(sums[0]) / n}
    if stage != "localizer":
        out["top1"] = float(sums[1]) / n
    if sums[4] > 0:
        out["loc_iou50"] = float(sums[3]) / float(sums[4])
    return out


def selection_score(stage: str, val: dict[str, float]) -> tuple[float, ...]:
    """Higher is better: val top-1 then minus the val loss (ties on small val sets), or minus the val
    smooth-L1 loss for the localizer."""
    return (-val["loss"],) if stage == "localizer" else (val["top1"], -val["loss"])


# ----------------------------------------------------------------------------------------- checkpoints
def _paths(out: Path) -> dict[str, Path]:
    return {
        "config": out / "config.yaml",
        "metrics": out / "metrics.jsonl",
        "tb": out / "tensorboard",
        "ckpt": out / "checkpoints",
        "last": out / "checkpoints" / "last.pt",
        "model": out / "model",
    }


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
            "criterion": None if run.criterion is None else run.criterion.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "scaler": None if scaler is None else scaler.state_dict(),
            "best": best,
            "accum": {} if state is None else dict(state.accum),
            "rng": rngs,
            "data_seed": run.cfg.train.seed,
            "world_size": run.dist.world_size,
            "metrics_lines": run.metrics_lines,
            "config": run.cfg.to_dict(),
        }
        folder = _paths(run.out)["ckpt"]
        atomic_save(ckpt, *(folder / name for name in names))
    D.barrier(run.dist)


def _arch(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "weighted"}


def restore(run: Run, ckpt: dict[str, Any], path: Path) -> None:
    """Load model and class means from a checkpoint, refusing one made for another architecture."""
    check_model_config(_arch(ckpt["model_config"]), _arch(run.model.config), path)
    if ckpt["model_config"].get("weighted") and not run.model.config.get("weighted"):
        run.model.enable_weighted_pooling()
    load_state_strict(run.model, ckpt["model"], f"the model in {path}")
    if run.criterion is not None:
        if ckpt["criterion"] is None:
            raise CheckpointError(f"{path} holds no class means but loss.variant is {run.cfg.loss.variant!r}")
        load_state_strict(run.criterion, ckpt["criterion"], f"the class means in {path}")
    run.completed = list(ckpt["completed"])
    run.metrics_lines = int(ckpt["metrics_lines"])


def export_model(run: Run, name: str = "model", *, with_means: bool = True) -> None:
    """``RUN/model``: the weights ``evaluate``/``predict`` load, plus the class means for NCM.

    Until the localization module has been trained the model is saved without it (``localizer: false``),
    so the pipeline classifies the whole image instead of cropping with an untrained module. ``name``
    ``teacher`` writes the stage-1 classifier to ``RUN/teacher`` in the same format (no class means).
    """
    from safetensors.torch import save_file

    from elope.data.transforms import crop_source_size
    from elope.evaluate import CLASS_MEANS_FILE
    from elope.weights import save_model

    model = run.model
    if model.localizer is not None and not run.localized:
        model = copy.copy(run.model)
        model._modules = OrderedDict(run.model._modules)
        model._modules["localizer"] = None
        model.config = {**run.model.config, "localizer": False}
    folder = run.out / name
    folder.mkdir(parents=True, exist_ok=True)
    means_file = folder / CLASS_MEANS_FILE
    if run.criterion is not None and with_means:
        tmp = folder / (CLASS_MEANS_FILE + ".tmp")
        save_file({"means": run.criterion.means.detach().float().contiguous().cpu()}, str(tmp))
        os.replace(tmp, means_file)
    else:
        means_file.unlink(missing_ok=True)
    cfg = run.cfg
    mean, std = normalization(cfg)
    meta = {
        "classes": run.classes,
        "tau": cfg.model.tau,
        "image_size": cfg.dataset.image_size,
        "crop_source": crop_source_size(cfg.dataset.image_size, cfg.dataset.crop_source),
        "splits": run.data.sizes(),
        "mean": list(mean),
        "std": list(std),
        "dataset": cfg.dataset.name,
        # absolute, so `elope evaluate --run RUN` works from any working directory
        "root": str(Path(cfg.dataset.root).resolve()) if cfg.dataset.root else None,
        "stages": list(run.completed),
        "localized": run.localized,
        "config": cfg.to_dict(),
    }
    save_model(model, folder, meta)


def append_metrics(run: Run, record: dict[str, Any], step: int) -> None:
    """One JSON line per epoch and stage in ``metrics.jsonl``, and the same scalars in TensorBoard."""
    run.metrics_lines += 1
    if not run.main:
        return
    with open(_paths(run.out)["metrics"], "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if run.writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                run.writer.add_scalar(f"{record['stage']}/{key}", value, step)
        run.writer.flush()


def _truncate_metrics(path: Path, lines: int) -> None:
    """Drop lines written after the checkpoint we resume from (they will be written again)."""
    if path.is_file():
        kept = path.read_text().splitlines(keepends=True)[:lines]
        path.write_text("".join(kept))


def _tb_step(cfg: Config, stage: str, epoch: int) -> int:
    """TensorBoard step: epochs counted through the whole recipe, so stages follow each other."""
    offset = sum(getattr(cfg.stages, s).epochs for s in STAGES[: STAGES.index(stage)])
    return offset + epoch


# ------------------------------------------------------------------------------------------ one stage
def begin_stage(run: Run, stage: str) -> None:
    """Structural changes a stage makes to the model (before any state is loaded into it)."""
    if stage == "localizer":
        run.model.init_localizer_from_backbone()
    if stage == "crop" and run.cfg.stages.crop.init == "fresh":
        restart_classifier(run)
    if stage == "weighted" and not run.model.config.get("weighted"):
        run.model.enable_weighted_pooling()


def restart_classifier(run: Run) -> None:
    """``stages.crop.init: fresh``: backbone, embedding, classifier and class means as a new run would
    draw them (the backbone's initial, e.g. ImageNet, weights), the localization module kept.

    The authors' release trains the crop-stage classifier this way (``elope.lua`` with
    ``--localization_module`` builds a new model from ``--backbone``, ``setupModel.lua`` lines 67-108).
    """
    fresh_model, fresh_criterion = make_model_and_loss(run.cfg, len(run.classes))
    state = {k: v for k, v in fresh_model.state_dict().items() if not k.startswith("localizer.")}
    missing = [k for k in run.model.state_dict() if k not in state and not k.startswith("localizer.")]
    if missing:
        raise TrainingError(f"cannot restart the classifier: {missing[:3]} missing in a fresh model")
    run.model.load_state_dict(state, strict=False)
    if run.criterion is not None and fresh_criterion is not None:
        run.criterion.load_state_dict(fresh_criterion.state_dict())


def run_stage(run: Run, stage: str, ckpt: dict[str, Any] | None = None) -> None:
    """Train one stage to the end; ``ckpt`` resumes it from an interrupted checkpoint of this stage."""
    cfg = run.cfg
    s_cfg: StageConfig = getattr(cfg.stages, stage)
    if ckpt is None:
        seed_everything(cfg.train.seed + 1 + STAGES.index(stage))
        begin_stage(run, stage)
    set_train_mode(run, stage)
    params = trainable(run.model)
    optimizer = make_optimizer(params, s_cfg)
    scheduler = make_scheduler(optimizer, s_cfg)
    scaler = torch.amp.GradScaler(run.device.type, enabled=cfg.train.amp == "fp16")
    state = StageState(stage)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        best = ckpt["best"]
        if best is not None and best.pop("same_as_model", False):
            best["model"] = _clone_state(run.model)
            best["criterion"] = None if run.criterion is None else _clone_state(run.criterion)
        state = StageState(stage, ckpt["epoch"], ckpt["step"], best, dict(ckpt["accum"]))
        rngs = ckpt["rng"]
        set_rng_state(rngs[run.dist.rank] if len(rngs) == run.dist.world_size else rngs[0])
    if _batches_per_epoch(run, s_cfg.batch_size) == 0 and s_cfg.epochs > 0:
        raise TrainingError(
            f"stage {stage!r}: batch size {s_cfg.batch_size} exceeds the {len(run.train_set)} training images"
        )
    module = run.model.localizer if stage == "localizer" else run.model
    net = D.wrap_ddp(module, run.dist, run.device)
    if run.criterion is not None:
        D.broadcast_tensor_(run.criterion.means, run.dist)

    val_set = run.data.get("val", stage_input_size(run, stage))
    while state.epoch < s_cfg.epochs:
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(run, state, net, optimizer, scheduler, scaler)
        scheduler.step()
        val = {} if val_set is None else evaluate_split(run, stage, val_set)
        score = selection_score(stage, val) if val else None
        improved = score is not None and (state.best is None or score > state.best["score"])
        if improved:
            keep = cfg.train.select == "best"
            state.best = {
                "score": score,
                "epoch": state.epoch + 1,
                "model": _clone_state(run.model) if keep else None,
                "criterion": _clone_state(run.criterion) if keep and run.criterion is not None else None,
            }
        record = {"stage": stage, "epoch": state.epoch + 1, "lr": lr}
        record.update({f"train_{k}": v for k, v in train.items() if k not in ("images_per_s", "time_s")})
        record.update({f"val_{k}": v for k, v in val.items()})
        record.update(images_per_s=train["images_per_s"], time_s=train["time_s"], best=bool(improved))
        append_metrics(run, record, _tb_step(cfg, stage, state.epoch + 1))
        if run.main:
            click.echo(_epoch_line(record), err=True)
        state.epoch, state.step, state.accum = state.epoch + 1, 0, {}
        save_checkpoint(run, state, optimizer, scheduler, scaler)

    finish_stage(run, state)


def _epoch_line(r: dict[str, Any]) -> str:
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


def finish_stage(run: Run, state: StageState) -> None:
    """Keep the best epoch (``select: best``), write the model folder, ``<stage>.pt`` and ``last.pt``."""
    if state.best is not None and state.best["model"] is not None:
        run.model.load_state_dict(state.best["model"])
        if run.criterion is not None:
            run.criterion.load_state_dict(state.best["criterion"])
        if run.main:
            click.echo(f"[{state.stage}] keeping epoch {state.best['epoch']} (best on val)", err=True)
    run.completed.append(state.stage)
    if run.main:
        export_model(run)
        if state.stage == "classifier":  # the localization module's teacher (Table 4, "mean feature map")
            export_model(run, TEACHER_DIR, with_means=False)
    save_checkpoint(run, None, names=(f"{state.stage}.pt", "last.pt"))


# ------------------------------------------------------------------------------------------- the run
def _plan(
    completed: list[str], wanted: list[str], in_progress: str | None, localizer: bool = True
) -> list[str]:
    """Stages to run now, in order, checked against what the run folder already holds.

    Without a localization module (``localizer=False``) the crop stage needs only the classifier: it then
    fine-tunes on the whole image (the control row of ``elope ablate``).
    """
    todo = [s for s in STAGES if s == in_progress or (s in wanted and s not in completed)]
    done = list(completed)
    for stage in todo:
        later = [c for c in done if STAGES.index(c) > STAGES.index(stage)]
        if later:
            raise TrainingError(
                f"stage {stage!r} cannot run after {later} in the same run folder; use a new --out"
            )
        needs = ("classifier",) if stage == "crop" and not localizer else REQUIRES[stage]
        missing = [r for r in needs if r not in done]
        if missing:
            raise TrainingError(
                f"stage {stage!r} needs the {missing[0]!r} stage first (not done in this run folder); "
                f"add it to --stages"
            )
        done.append(stage)
    return todo


def prepare_data(cfg: Config, out: Path, dist: D.DistInfo) -> Config:
    """Resolve the dataset root; ``synthetic`` without ``--root`` is generated into ``RUN/data``."""
    if cfg.dataset.root is not None:
        return cfg
    if cfg.dataset.name != "synthetic":
        raise TrainingError(f"--root is required for dataset {cfg.dataset.name!r}")
    root = out / "data"
    if dist.is_main and not root.exists():
        from elope.data.synthetic import write_synthetic

        s = cfg.dataset.synthetic
        tmp = out / "data.partial"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        written = Path(write_synthetic(tmp, **s.model_dump()))
        if written.resolve() != tmp.resolve():
            raise TrainingError(f"write_synthetic wrote to {written}, expected {tmp}")
        os.replace(tmp, root)
    D.barrier(dist)
    cfg = cfg.model_copy(deep=True)
    cfg.dataset.root = str(root.resolve())
    return cfg


def make_model_and_loss(cfg: Config, num_classes: int) -> tuple[Any, nn.Module | None]:
    """The recipe's model and class-mean loss (None for ``loss.variant: none``), on the CPU."""
    from elope.embedding import ClassMeanLoss
    from elope.model import ELoPE

    m, lo = cfg.model, cfg.loss
    model = ELoPE(
        m.backbone,
        num_classes,
        k=m.k,
        embedding_dim=m.embedding_dim,
        pooling=m.pooling,
        localizer=m.localizer,
        pretrained=m.pretrained,
        weights=m.weights,
        image_size=cfg.dataset.image_size,
        tau=m.tau,
        localizer_input=m.localizer_input,
        heatmap_upsample=m.heatmap_upsample,
    )
    criterion = None
    if lo.variant != "none":
        criterion = ClassMeanLoss(
            num_classes,
            m.embedding_dim,
            lo.alpha,
            lo.gamma,
            lo.margin,
            variant=lo.variant,
            renormalize_means=lo.renormalize_means,
        )
    return model, criterion


def build_run(cfg: Config, out: Path, dist: D.DistInfo, device: torch.device) -> Run:
    """Datasets (train and, with ``val_fraction > 0``, val; never test), model and class-mean loss, seeded
    with ``train.seed``."""
    data = RunData(cfg, run_splits(cfg))
    train_set = data.get("train", cfg.dataset.image_size)
    val_set = data.get("val", cfg.dataset.image_size)
    if val_set is not None and len(val_set) == 0:
        raise TrainingError(f"the validation split of {cfg.dataset.name!r} at {cfg.dataset.root} is empty")
    classes = list(train_set.classes)
    seed_everything(cfg.train.seed)
    model, criterion = make_model_and_loss(cfg, len(classes))
    if criterion is not None:
        criterion.to(device)
    if cfg.train.sync_bn and dist.enabled:
        model = D.convert_sync_bn(model, device)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return Run(cfg, out, device, dist, model, criterion, data, classes)


def describe_data(run: Run) -> dict[str, Any]:
    """The first line of ``metrics.jsonl``: dataset, classes, and the split and image count of each role."""
    d = run.cfg.dataset
    return {
        "event": "data",
        "dataset": d.name,
        "root": d.root,
        "classes": len(run.classes),
        **run.data.sizes(),
    }


def run_training(cfg: Config, out: str | Path, *, resume: bool = False, force: bool = False) -> Run:
    """Run (or resume) the configured stages in ``out``; returns the finished :class:`Run`.

    ``out`` is guarded by :func:`elope.runfolder.open_run_folder` (a run is never overwritten; ``force``
    deletes the earlier run first); backbone and input size are checked before anything is read or written.
    """
    from torch.utils.tensorboard import SummaryWriter

    from elope.preflight import check_model_settings
    from elope.runfolder import open_run_folder

    out = Path(out)
    paths = _paths(out)
    check_model_settings(cfg)  # unknown backbone, too small an input: before any data is read
    device_type = (
        "cuda"
        if cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    dist = D.init_distributed(device_type)
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        device = resolve_device(cfg.train.device, dist)
        if cfg.train.sync_bn and device.type != "cuda":
            raise TrainingError("train.sync_bn needs CUDA (SyncBatchNorm has no CPU implementation)")
        for s in cfg.train.stages:
            b = getattr(cfg.stages, s).batch_size
            if b % dist.world_size:
                raise TrainingError(
                    f"stages.{s}.batch_size={b} (the global batch) is not divisible by {dist.world_size} processes"
                )
        if cfg.train.deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
            torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.train.deterministic
        ckpt = open_run_folder(
            out, resume=resume, force=force, generated_data=cfg.dataset.root is None, is_main=dist.is_main
        )
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
        D.barrier(dist)
        cfg = prepare_data(cfg, out, dist)
        run = build_run(cfg, out, dist, device)
        in_progress = None
        if ckpt is not None:
            restore(run, ckpt, paths["last"])
            in_progress = ckpt["stage"]
        todo = _plan(run.completed, cfg.train.stages, in_progress, cfg.model.localizer)
        if ckpt is None:
            run.metrics_lines = 1  # the data line
        if dist.is_main:  # the run folder changes only once the run is known to be valid
            paths["config"].write_text(cfg.to_yaml())
            data = describe_data(run)
            if ckpt is not None:
                _truncate_metrics(paths["metrics"], run.metrics_lines)
            else:
                paths["metrics"].write_text(json.dumps(data) + "\n")
            val = data["val"]
            click.echo(
                f"data: {data['dataset']} at {data['root']}: {len(run.classes)} classes; train on "
                f"{data['train']['split']!r} ({data['train']['images']} images); "
                + (
                    "no validation split"
                    if val is None
                    else f"validate on {val['split']!r} ({val['images']} images)"
                ),
                err=True,
            )
            start = _tb_step(cfg, todo[0], (ckpt or {}).get("epoch", 0) + 1) if todo else None
            run.writer = SummaryWriter(str(paths["tb"]), purge_step=start if ckpt is not None else None)
            click.echo(
                f"run {out}: stages to run {todo or 'none (all done)'}; {dist.world_size} process(es), "
                f"device {device}",
                err=True,
            )
        for stage in todo:
            run_stage(run, stage, ckpt if stage == in_progress else None)
        if run.writer is not None:
            run.writer.close()
        return run
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        D.cleanup()


# --------------------------------------------------------------------------------------------- the CLI
@click.command("train")
@click.option(
    "--dataset", type=click.Choice(DATASETS), help="Recipe and data set (defaults: configs/<dataset>.yaml)."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset folder ('synthetic': optional, generated into RUN/data otherwise).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with any subset of the recipe's keys.",
)
@click.option("--backbone", help="resnet18/34/50/101 or a timm CNN (paper: resnet50, resnet101).")
@click.option("--pretrained/--no-pretrained", default=None, help="ImageNet initialisation (paper: yes).")
@click.option(
    "--weights", type=click.Path(exists=True, dir_okay=False), help="Local backbone or model weights."
)
@click.option("--image-size", type=click.IntRange(min=16), help="Input side in pixels (paper: 448).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch of every stage (paper: 14).")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs of every stage (quick runs).")
@click.option("--stages", help="Comma-separated subset of classifier,localizer,crop,weighted.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, help="Seed of initialisation, data order and augmentation.")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader worker processes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option(
    "--force", is_flag=True, help="Delete the earlier run in --out (its outputs; says which) and start over."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any recipe key, e.g. --set loss.lambda=1.0 --set train.amp=bf16 (repeatable).",
)
def train_command(
    dataset: str | None,
    root: Path | None,
    out: Path,
    config_file: Path | None,
    backbone: str | None,
    pretrained: bool | None,
    weights: str | None,
    image_size: int | None,
    batch_size: int | None,
    epochs: int | None,
    stages: str | None,
    device: str | None,
    seed: int | None,
    workers: int | None,
    resume: bool,
    force: bool,
    overrides: tuple[str, ...],
) -> None:
    """Train ELoPE: classifier, localizer, crop and weighted stages (Sec. 5-6 of the paper)."""
    options = {
        "dataset.root": None if root is None else str(root),
        "model.backbone": backbone,
        "model.pretrained": pretrained,
        "model.weights": weights,
        "dataset.image_size": image_size,
        "train.stages": None if stages is None else [s.strip() for s in stages.split(",") if s.strip()],
        "train.device": device,
        "train.seed": seed,
        "dataset.num_workers": workers,
    }
    pairs = [(k, v) for k, v in options.items() if v is not None] + list(overrides)
    with user_errors():
        cfg = resolve_config(
            out, dataset, config_file, pairs, epochs=epochs, batch_size=batch_size, resume=resume
        )
        run_training(cfg, out, resume=resume, force=force)
    click.echo(f"done: {out / 'model'}", err=True)


def resolve_config(
    out: Path,
    dataset: str | None,
    config_file: Path | None = None,
    overrides: list[Any] | tuple[Any, ...] = (),
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    resume: bool = False,
) -> Config:
    """The recipe of a run: the packaged one (fresh run) or ``RUN/config.yaml`` (``resume``), overridden."""
    base = None
    if resume:
        from elope.runfolder import read_run_config

        base = read_run_config(out / "config.yaml")
        if dataset is not None and dataset != base["dataset"]["name"]:
            raise ConfigError(f"{out} was trained on {base['dataset']['name']!r}, not {dataset!r}")
    return load_config(dataset, config_file, overrides, epochs=epochs, batch_size=batch_size, base=base)


@contextmanager
def user_errors() -> Iterator[None]:
    """Problems the user can fix become a one-line click error instead of a traceback."""
    from elope.data.errors import DataError
    from elope.weights import WeightsError

    try:
        yield
    except (ConfigError, TrainingError, CheckpointError, DataError, WeightsError, FileExistsError) as e:
        from elope.failures import one_line

        raise click.ClickException(one_line(e)) from None  # a DataLoader worker's traceback left out
