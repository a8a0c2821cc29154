"""The ELoPE recipe (Hanselmann & Ney, WACV 2020) read top to bottom: ``run_training`` runs its four stages.

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

The pieces: the run context (``context``), the stage rules (``stages``), one batch (``steps``), the
epoch loop (``loop``), validation (``validate``), checkpoints (``resume``). Run folder (``elope.runs``,
``docs/architecture.md``): ``config.yaml``, ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/<stage>.pt`` and ``checkpoints/last.pt`` (atomic), ``model/`` (model.safetensors,
model.json, class_means.safetensors). ``--resume`` continues from ``checkpoints/last.pt`` (see
``elope.runs.checkpoint`` and ``elope.engine.sampling`` for what makes it exact).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
import torch

from elope.config import STAGES, Config, ConfigError, StageConfig, load_config
from elope.data.errors import DataError
from elope.data.synthetic import write_synthetic
from elope.engine import distributed as D
from elope.engine.context import (
    Run,
    RunData,
    StageState,
    resolve_device,
    run_spec,
    run_splits,
    seed_everything,
)
from elope.engine.localizer_check import check_localizer, describe_check
from elope.engine.loop import batches_per_epoch, train_one_epoch
from elope.engine.preflight import check_model_settings
from elope.engine.recipe import open_run, start_metrics
from elope.engine.resume import clone_state, restore, resume_stage, save_checkpoint
from elope.engine.stages import (
    begin_stage,
    make_model_and_loss,
    make_optimizer,
    make_scheduler,
    plan_stages,
    set_train_mode,
    stage_input_size,
    trainable,
)
from elope.engine.validate import evaluate_split, selection_score
from elope.failures import TrainingError, one_line
from elope.nn.weights import WeightsError
from elope.runs.checkpoint import CheckpointError
from elope.runs.environment import environment
from elope.runs.guard import read_run_config
from elope.runs.layout import MODEL_DIR, TEACHER_DIR, run_paths
from elope.runs.metrics import append_record, open_writer, tb_step, write_scalars
from elope.runs.model_folder import model_meta, without_localizer, write_model_folder

__all__ = [
    "TrainingError",
    "append_metrics",
    "build_run",
    "export_run_model",
    "finish_stage",
    "prepare_data",
    "resolve_config",
    "run_stage",
    "run_training",
    "user_errors",
]


def run_training(
    cfg: Config, out: str | Path, *, resume: bool = False, force: bool = False, allow: Collection[str] = ()
) -> Run:
    """Run (or resume) the configured stages in ``out``; returns the finished :class:`Run`.

    ``out`` is locked and guarded by :func:`elope.engine.recipe.open_run` (one writer, never overwritten,
    a resume keeps its recipe but ``allow``); backbone and input size are checked before anything is read.
    """
    out = Path(out)
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
    lock = ExitStack()
    try:
        device = resolve_device(cfg.train.device, dist)
        _check_run_settings(cfg, dist, device)
        ckpt, changes = open_run(cfg, out, lock, dist.is_main, resume=resume, force=force, allow=allow)
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
        D.barrier(dist)
        cfg = prepare_data(cfg, out, dist)
        run = build_run(cfg, out, dist, device)
        in_progress = None
        if ckpt is not None:
            restore(run, ckpt, run_paths(out).last)
            in_progress = ckpt["stage"]
        todo = plan_stages(run.completed, cfg.train.stages, in_progress, cfg.model.localizer)
        if ckpt is None:
            run.metrics_lines = 1  # the data line
        if dist.is_main:  # the run folder changes only once the run is known to be valid
            _start_records(run, ckpt, todo, changes)
        for stage in todo:
            run_stage(run, stage, ckpt if stage == in_progress else None)
        if run.writer is not None:
            run.writer.close()
        return run
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


def _start_records(run: Run, ckpt: dict[str, Any] | None, todo: list[str], changes: dict[str, Any]) -> None:
    """``metrics.jsonl`` (:func:`elope.engine.recipe.start_metrics`), ``config.yaml``, the TensorBoard
    writer, and what the run will do."""
    paths, cfg, data = run_paths(run.out), run.cfg, describe_data(run)
    for note in start_metrics(run, data, ckpt is not None, changes):
        click.echo(note, err=True)
    paths.config.write_text(cfg.to_yaml())
    val = data["val"]
    click.echo(
        f"data: {data['dataset']} at {data['root']}: {len(run.classes)} classes; train on "
        f"{data['train']['split']!r} ({data['train']['images']} images); "
        + (
            "no validation split" if val is None else f"validate on {val['split']!r} ({val['images']} images)"
        ),
        err=True,
    )
    start = tb_step(cfg, todo[0], (ckpt or {}).get("epoch", 0) + 1) if todo else None
    run.writer = open_writer(paths.tensorboard, purge_step=start if ckpt is not None else None)
    click.echo(
        f"run {run.out}: stages to run {todo or 'none (all done)'}; {run.dist.world_size} process(es), "
        f"device {run.device}",
        err=True,
    )


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


def build_run(cfg: Config, out: Path, dist: D.DistInfo, device: torch.device) -> Run:
    """Datasets (train and, with ``val_fraction > 0``, val; never test), model and class-mean loss, seeded
    with ``train.seed``."""
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
        "environment": environment(run.device),
    }


def run_stage(run: Run, stage: str, ckpt: dict[str, Any] | None = None) -> None:
    """Train one stage to the end; ``ckpt`` resumes it from an interrupted checkpoint of this stage."""
    cfg = run.cfg
    s_cfg: StageConfig = getattr(cfg.stages, stage)
    if ckpt is None:
        seed_everything(cfg.train.seed + 1 + STAGES.index(stage))
        begin_stage(run, stage)
    set_train_mode(run, stage)
    optimizer = make_optimizer(trainable(run.model), s_cfg)
    scheduler = make_scheduler(optimizer, s_cfg)
    scaler = torch.amp.GradScaler(run.device.type, enabled=cfg.train.amp == "fp16")
    state = StageState(stage)
    if ckpt is not None:
        state = resume_stage(run, stage, ckpt, optimizer, scheduler, scaler)
    if batches_per_epoch(run, s_cfg.batch_size) == 0 and s_cfg.epochs > 0:
        raise TrainingError(
            f"stage {stage!r}: batch size {s_cfg.batch_size} exceeds the {len(run.train_set)} training images"
        )
    net = D.wrap_ddp(run.model.localizer if stage == "localizer" else run.model, run.dist, run.device)
    if run.criterion is not None:
        D.broadcast_tensor_(run.criterion.means, run.dist)
    val_set = run.data.get("val", stage_input_size(run, stage))
    while state.epoch < s_cfg.epochs:
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(run, state, net, optimizer, scheduler, scaler)
        scheduler.step()
        val = {} if val_set is None else evaluate_split(run, stage, val_set)
        improved = keep_if_best(run, state, val)
        record = {"stage": stage, "epoch": state.epoch + 1, "lr": lr}
        record.update({f"train_{k}": v for k, v in train.items() if k not in ("images_per_s", "time_s")})
        record.update({f"val_{k}": v for k, v in val.items()})
        record.update(images_per_s=train["images_per_s"], time_s=train["time_s"], best=improved)
        append_metrics(run, record, tb_step(cfg, stage, state.epoch + 1))
        if run.main:
            click.echo(epoch_line(record), err=True)
        state.epoch, state.step, state.accum = state.epoch + 1, 0, {}
        save_checkpoint(run, state, optimizer, scheduler, scaler)
    finish_stage(run, state)


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


def finish_stage(run: Run, state: StageState) -> None:
    """Keep the best epoch (``select: best``), write the model folder, ``<stage>.pt`` and ``last.pt``."""
    if state.best is not None and state.best["model"] is not None:
        run.model.load_state_dict(state.best["model"])
        if run.criterion is not None:
            run.criterion.load_state_dict(state.best["criterion"])
        if run.main:
            click.echo(f"[{state.stage}] keeping epoch {state.best['epoch']} (best on val)", err=True)
    if state.stage == "localizer":  # τ chosen and the module checked before the crop stage uses it
        record = check_localizer(run)
        run.model.spec = run.model.spec.replace(tau=record["tau"])  # the spec RUN/model stores
        append_metrics(run, record, tb_step(run.cfg, "localizer", run.cfg.stages.localizer.epochs))
        if run.main:
            click.echo(describe_check(record), err=True)
    run.completed.append(state.stage)
    if run.main:
        export_run_model(run)
        if state.stage == "classifier":  # the localization module's teacher (Table 4, "mean feature map")
            export_run_model(run, TEACHER_DIR, with_means=False)
    save_checkpoint(run, None, names=(f"{state.stage}.pt", "last.pt"))


def export_run_model(run: Run, name: str = MODEL_DIR, *, with_means: bool = True) -> None:
    """``RUN/model``: the weights ``evaluate``/``predict`` load, plus the class means for NCM.

    Until the localization module has been trained the model is saved without it (``localizer: false``),
    so the pipeline classifies the whole image instead of cropping with an untrained module. ``name``
    ``teacher`` writes the stage-1 classifier to ``RUN/teacher`` in the same format (no class means).
    """
    model = run.model if run.localized else without_localizer(run.model)
    means = run.criterion.means if run.criterion is not None and with_means else None
    meta = model_meta(run.cfg, run.classes, run.data.sizes(), run.completed, run.localized)
    meta["environment"] = environment(run.device)
    write_model_folder(run.out / name, model, meta, means)


def append_metrics(run: Run, record: dict[str, Any], step: int) -> None:
    """One JSON line per epoch and stage in ``metrics.jsonl``, and the same scalars in TensorBoard."""
    run.metrics_lines += 1
    if not run.main:
        return
    append_record(run_paths(run.out).metrics, record)
    if run.writer is not None:
        write_scalars(run.writer, record, step)


def epoch_line(r: dict[str, Any]) -> str:
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


def resolve_config(
    out: Path,
    dataset: str | None,
    config_file: Path | None = None,
    overrides: list[Any] | tuple[Any, ...] = (),
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    resume: bool = False,
    paper: bool = False,
) -> Config:
    """The recipe of a run: the packaged one (fresh run) or ``RUN/config.yaml`` (``resume``), overridden;
    ``paper``: the paper's localization step (:data:`elope.config.PAPER_LOCALIZATION`)."""
    base = None
    if resume:
        base = read_run_config(out / "config.yaml")
        if dataset is not None and dataset != base["dataset"]["name"]:
            raise ConfigError(f"{out} was trained on {base['dataset']['name']!r}, not {dataset!r}")
    return load_config(
        dataset, config_file, overrides, epochs=epochs, batch_size=batch_size, base=base, paper=paper
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Problems the user can fix become a one-line click error instead of a traceback."""
    try:
        yield
    except (ConfigError, TrainingError, CheckpointError, DataError, WeightsError, FileExistsError) as e:
        raise click.ClickException(one_line(e)) from None  # a DataLoader worker's traceback left out
