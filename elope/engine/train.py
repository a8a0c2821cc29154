"""The ELoPE recipe (Hanselmann & Ney, WACV 2020) read top to bottom: ``run_training`` runs its four stages.

1. ``classifier``: backbone + k-max pooling + embedding + classifier on full images with
   L = L_CE + λ L_e (Eq. 1); L_e is the class-mean loss of Eqs. (5)-(10).
2. ``localizer``: everything else frozen (eval mode); the localization module, initialised from the
   trained stem and first stage, regresses the channel mean of the classifier's last feature map with the
   smooth L1 loss (Sec. 5, Fig. 3). When that map is not the size of the module's output (inputs other
   than 448 px: e.g. 2×2 at 64 px vs 14×14), the target is resized bilinearly to the module's output.
3. ``crop``: the classifier trained on crops: each (augmented) training image goes through the frozen
   localization module, is cut at its box (threshold τ, Table 2) and resized to the input size, then
   L = L_CE + λ L_e as in stage 1. The crop is cut from the *crop source* by :meth:`elope.ELoPE.crop`, as
   in the test-time pipeline (``docs/architecture.md``: "The pipeline", "One training step"). How the
   stage starts is ``stages.crop.init``:
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

One training step, top to bottom (``docs/architecture.md``): :func:`run_stage` works the stage out once
(:func:`elope.engine.plan.plan_stage`), then per epoch :func:`elope.engine.loop.train_one_epoch` calls
:func:`elope.engine.steps.train_step` on each batch (:func:`elope.data.source.render_sources`,
:meth:`elope.ELoPE.crop`, the losses of :mod:`elope.nn.losses`). The other pieces: the run context
(``context``), the stage rules (``stages``), validation (``validate``), checkpoints (``resume``), the
records (``records``). Run folder (``elope.runs``,
``docs/architecture.md``): ``config.yaml``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/<stage>.pt`` and ``checkpoints/last.pt`` (atomic), ``model/`` (model.safetensors,
model.json, class_means.safetensors). ``--resume`` continues from ``checkpoints/last.pt`` (see
``elope.runs.checkpoint`` and ``elope.engine.sampling`` for what makes it exact).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from elope import writer
from elope.config import STAGES, Config
from elope.data.synthetic import write_synthetic
from elope.device import auto_device
from elope.engine import distributed as D
from elope.engine.checkpointing import restore, resume_stage, save_checkpoint
from elope.engine.crop_decision import applies, decide_crops, describe_decision
from elope.engine.localizer_check import check_localizer, describe_check
from elope.engine.loop import StepHook, stage_loader, train_one_epoch
from elope.engine.plan import StagePlan, plan_stage
from elope.engine.preflight import check_model_settings
from elope.engine.records import append_metrics, epoch_line, start_records
from elope.engine.run import Run, RunData, run_splits
from elope.engine.run_spec import run_spec
from elope.engine.sampling import seed_everything
from elope.engine.stage_state import StageState
from elope.engine.stages import (
    begin_stage,
    make_model_and_loss,
    make_optimizer,
    make_scheduler,
    plan_stages,
    set_train_mode,
    trainable,
)
from elope.engine.steps import Learner
from elope.engine.validate import evaluate_split, selection_score
from elope.failures import Echo, TrainingError, to_stderr
from elope.runs.checkpoint import clone_state
from elope.runs.environment import environment
from elope.runs.layout import CROPS_DIR, MODEL_DIR, TEACHER_DIR, run_paths
from elope.runs.lock import check_lock_held, folder_write_error
from elope.runs.metrics_log import tb_step
from elope.runs.model_folder import model_meta, without_localizer, write_model_folder
from elope.runs.start import open_run

__all__ = [
    "TrainingError",
    "build_run",
    "finish_stage",
    "prepare_data",
    "run_stage",
    "run_training",
    "write_run_model",
]


def run_training(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    allow: Collection[str] = (),
    echo: Echo = to_stderr,
    hooks: Sequence[StepHook] = (),
) -> Run:
    """Run (or resume) the configured stages in ``out``; returns the finished :class:`Run`.

    ``out`` is locked and guarded by :func:`elope.runs.start.open_run` (one writer, never overwritten,
    a resume keeps its recipe but ``allow``); backbone and input size are checked before anything is read.
    ``echo`` receives the lines for the user (progress, warnings); ``hooks`` are called after every
    training step with the stage's :class:`StageState` (tests: a kill at a given step).
    """
    out = Path(out)
    check_model_settings(cfg)  # unknown backbone, too small an input: before any data is read
    dist = D.init_distributed(torch.device(auto_device(cfg.train.device)).type)
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    lock = ExitStack()
    try:
        device = D.resolve_device(cfg.train.device, dist)
        _check_run_settings(cfg, dist, device)
        ckpt, changes = open_run(
            cfg, out, lock, dist.is_main, resume=resume, force=force, allow=allow, echo=echo
        )
        if dist.is_main:
            writer.make_folder(out)
        D.barrier(dist)
        run = build_run(prepare_data(cfg, out, dist), out, dist, device, echo)
        in_progress = None
        if ckpt is not None:
            restore(run, ckpt, run_paths(out).last)
            in_progress = ckpt["stage"]
        todo = plan_stages(run.completed, cfg.train.stages, in_progress, cfg.model.localizer)
        if dist.is_main:  # the run folder changes only once the run is known to be valid
            start_records(run, ckpt, todo, changes)
        for stage in todo:
            run_stage(run, stage, ckpt if stage == in_progress else None, hooks)
        if run.writer is not None:
            run.writer.close()
        return run
    except OSError as error:  # the run folder deleted, moved or made unwritable under the run: one line
        if (lost := folder_write_error(out, error)) is None:
            raise
        raise lost from None
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        D.cleanup()
        lock.close()


def _check_run_settings(cfg: Config, dist: D.DistInfo, device: torch.device) -> None:
    """Settings that depend on the device and the processes; deterministic algorithms when asked for."""
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


def prepare_data(cfg: Config, out: Path, dist: D.DistInfo) -> Config:
    """Resolve the dataset root; ``synthetic`` without ``--root`` is generated into ``RUN/data``."""
    if cfg.dataset.root is not None:
        return cfg
    if cfg.dataset.name != "synthetic":
        raise TrainingError(f"--root is required for dataset {cfg.dataset.name!r}")
    root = out / "data"
    if dist.is_main and not root.exists():
        s = cfg.dataset.synthetic
        tmp = out / "data.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        written = Path(write_synthetic(tmp, **s.model_dump()))
        if written.resolve() != tmp.resolve():
            raise TrainingError(f"write_synthetic wrote to {written}, expected {tmp}")
        os.replace(tmp, root)
    D.barrier(dist)
    cfg = cfg.model_copy(deep=True)
    cfg.dataset.root = str(root.resolve())
    return cfg


def build_run(cfg: Config, out: Path, dist: D.DistInfo, device: torch.device, echo: Echo = to_stderr) -> Run:
    """Datasets (train and, with ``val_fraction > 0``, val; never test), the model's spec
    (:func:`elope.engine.run_spec.run_spec`), model and class-mean loss, seeded with ``train.seed``."""
    spec = run_spec(cfg)
    data = RunData(cfg, run_splits(cfg), spec)
    train_set = data.get("train", spec.image_size)
    val_set = data.get("val", spec.image_size)
    if val_set is not None and len(val_set) == 0:
        raise TrainingError(f"the validation split of {cfg.dataset.name!r} at {cfg.dataset.root} is empty")
    classes = list(train_set.classes)
    seed_everything(cfg.train.seed)
    model, criterion = make_model_and_loss(cfg, len(classes), spec)
    if criterion is not None:
        criterion.to(device)
    if cfg.train.sync_bn and dist.enabled:
        model = D.convert_sync_bn(model, device)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return Run(cfg, out, device, dist, model, criterion, data, classes, echo=echo)


def run_stage(
    run: Run, stage: str, ckpt: dict[str, Any] | None = None, hooks: Sequence[StepHook] = ()
) -> None:
    """Train one stage to the end; ``ckpt`` resumes it from an interrupted checkpoint of this stage.

    The stage is worked out once (:func:`elope.engine.plan.plan_stage`); every epoch is
    :func:`elope.engine.loop.train_one_epoch` over the stage's loader, validation, the epoch record and
    ``last.pt``.
    """
    if ckpt is None:
        seed_everything(run.cfg.train.seed + 1 + STAGES.index(stage))
        begin_stage(run, stage)
    plan = plan_stage(run, stage)
    set_train_mode(run, stage)
    optimizer = make_optimizer(trainable(run.model), plan.settings)
    scheduler = make_scheduler(optimizer, plan.settings)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.cfg.train.amp == "fp16")
    state = StageState(stage)
    if ckpt is not None:
        state = resume_stage(run, stage, ckpt, optimizer, scheduler, scaler)
    if plan.steps == 0 and plan.settings.epochs > 0:
        raise TrainingError(
            f"stage {stage!r}: batch size {plan.settings.batch_size} exceeds the {len(run.train_set)} "
            "training images"
        )
    net = D.wrap_ddp(run.model.localizer if stage == "localizer" else run.model, run.dist, run.device)
    if run.criterion is not None:
        D.broadcast_tensor_(run.criterion.means, run.dist)
    val_set = run.data.get("val", plan.input_size)
    learner = Learner(run.model, net, run.criterion, optimizer, scaler, run.dist)

    def checkpoint() -> None:
        save_checkpoint(run, state, optimizer, scheduler, scaler)

    while state.epoch < plan.settings.epochs:
        lr = optimizer.param_groups[0]["lr"]
        loader = stage_loader(run.data, plan, state)
        train = train_one_epoch(learner, loader, plan, state, checkpoint=checkpoint, hooks=hooks)
        scheduler.step()
        end_epoch(run, plan, state, lr, train, val_set)
        checkpoint()
    finish_stage(run, plan, state)


def end_epoch(
    run: Run, plan: StagePlan, state: StageState, lr: float, train: dict[str, float], val_set: Any
) -> None:
    """Validation (with ``val_fraction > 0``), the best epoch, the epoch record; then the next epoch."""
    val = {} if val_set is None else evaluate_split(run.model, val_set, plan, run.dist)
    improved = keep_if_best(run, state, val)
    record: dict[str, Any] = {"stage": state.stage, "epoch": state.epoch + 1, "lr": lr}
    record.update({f"train_{k}": v for k, v in train.items() if k not in ("images_per_s", "time_s")})
    record.update({f"val_{k}": v for k, v in val.items()})
    record.update(images_per_s=train["images_per_s"], time_s=train["time_s"], best=improved)
    append_metrics(run, record, tb_step(run.cfg, state.stage, state.epoch + 1))
    if run.main:
        run.echo(epoch_line(record))
    state.epoch, state.step, state.accum = state.epoch + 1, 0, {}


def keep_if_best(run: Run, state: StageState, val: dict[str, float]) -> bool:
    """Whether this epoch scores best on the validation split so far; with ``train.select: best`` its
    weights and class means are kept as the stage's result."""
    score = selection_score(state.stage, val) if val else None
    improved = score is not None and (state.best is None or score > state.best["score"])
    if improved:
        keep = run.cfg.train.select == "best"
        state.best = {
            "score": score,
            "epoch": state.epoch + 1,
            "model": clone_state(run.model) if keep else None,
            "criterion": clone_state(run.criterion) if keep and run.criterion is not None else None,
        }
    return bool(improved)


def finish_stage(run: Run, plan: StagePlan, state: StageState) -> None:
    """Keep the best epoch (``select: best``); after stage 2, check the module and install the τ it chose in
    the model's spec; write the model folder, ``<stage>.pt`` and ``last.pt``."""
    if state.best is not None and state.best["model"] is not None:
        run.model.load_state_dict(state.best["model"])
        if run.criterion is not None:
            run.criterion.load_state_dict(state.best["criterion"])
        if run.main:
            run.echo(f"[{state.stage}] keeping epoch {state.best['epoch']} (best on val)")
    if state.stage == "localizer":  # τ chosen and the module checked before the crop stage uses it
        record = check_localizer(run, plan)
        run.model.spec = run.model.spec.replace(tau=record["tau"])  # the spec RUN/model stores
        append_metrics(run, record, tb_step(run.cfg, "localizer", run.cfg.stages.localizer.epochs))
        if run.main:
            run.echo(describe_check(record))
    run.completed.append(state.stage)
    decision = decide_crops(run, plan) if applies(run, state.stage) else None
    if run.main:
        write_run_model(run)
        if state.stage == "classifier":  # the localization module's teacher (Table 4, "mean feature map")
            write_run_model(run, TEACHER_DIR)
        if decision is not None:
            keep_decision(run, *decision)
    save_checkpoint(run, None, names=(f"{state.stage}.pt", "last.pt"))


def keep_decision(run: Run, record: dict[str, Any], whole: tuple[Any, Any] | None) -> None:
    """Record the crop decision (:mod:`elope.engine.crop_decision`); where whole images won, the crop
    pipeline moves to ``RUN/crops`` and ``RUN/model`` becomes the stage-1 classifier."""
    last = record["stage"]
    append_metrics(run, record, tb_step(run.cfg, last, getattr(run.cfg.stages, last).epochs))
    run.echo(describe_decision(record))
    if whole is None:
        return
    write_run_model(run, CROPS_DIR)
    teacher, means = whole
    meta = model_meta(run.cfg, run.classes, run.data.sizes(), ["classifier"], False)
    meta.update(environment=environment(run.device), crop_decision=record)
    write_model_folder(run.out / MODEL_DIR, teacher, meta, means)


def write_run_model(run: Run, name: str = MODEL_DIR, *, with_means: bool = True) -> None:
    """``RUN/model``: the weights ``evaluate``/``predict`` load, plus the class means for NCM.

    Until the localization module has been trained the model is saved without it (``localizer: false``),
    so the pipeline classifies the whole image instead of cropping with an untrained module. ``name``
    ``teacher`` writes the stage-1 classifier to ``RUN/teacher`` in the same format (no class means).
    """
    check_lock_held(run.out)  # deleted or moved meanwhile: never made again by the mkdir below
    model = run.model if run.localized else without_localizer(run.model)
    means = run.criterion.means if run.criterion is not None and with_means else None
    meta = model_meta(run.cfg, run.classes, run.data.sizes(), run.completed, run.localized)
    meta["environment"] = environment(run.device)
    write_model_folder(run.out / name, model, meta, means)
