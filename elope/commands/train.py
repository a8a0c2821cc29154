"""``elope train``: the four stages of the recipe (:func:`elope.engine.train.run_training`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope.commands.options import (
    BATCH_RANGE,
    EPOCHS_RANGE,
    SEED_RANGE,
    checked_output,
    config_option,
    output_rules,
    overrides_option,
    paper_option,
    renamed_option,
    stderr_echo,
    user_errors,
)
from elope.config import DATASETS

#: ``ctx.obj`` key of the step hooks a caller of the command line passes in (``main(obj={STEP_HOOKS:
#: [...]})``; tests/kill_at_step.py), handed to :func:`elope.engine.train.run_training`.
STEP_HOOKS = "step_hooks"


@dataclass(frozen=True)
class TrainOptions:
    """The options of ``elope train`` as click parses them (one field per option, named by its ``dest``)."""

    dataset: str | None
    root: Path | None
    out: Path
    config_file: Path | None
    backbone: str | None
    pretrained: bool | None
    weights: str | None
    image_size: int | None
    batch_size: int | None
    epochs: int | None
    stages: str | None
    device: str | None
    seed: int | None
    num_workers: int | None
    resume: bool
    force: bool
    paper: bool
    overrides: tuple[str, ...]
    allow_changes: tuple[str, ...]


@click.command("train", short_help="Train the four stages of the recipe.")
@click.option(
    "--dataset", type=click.Choice(DATASETS), help="Recipe and data set (defaults: configs/<dataset>.yaml)."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset folder ('synthetic': optional, generated into RUN/data otherwise).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@config_option("YAML file with any subset of the recipe's keys.")
@click.option("--backbone", help="resnet18/34/50/101 or a timm CNN (paper: resnet50, resnet101).")
@click.option("--pretrained/--no-pretrained", default=None, help="ImageNet initialisation (paper: yes).")
@click.option(
    "--weights", type=click.Path(exists=True, dir_okay=False), help="Local backbone or model weights."
)
@click.option(
    "--image-size",
    type=click.IntRange(16, 4096),
    help="Classifier input side, dataset.image_size (paper: 448).",
)
@click.option("--batch-size", type=BATCH_RANGE, help="Global batch of every stage (paper: 14).")
@click.option("--epochs", type=EPOCHS_RANGE, help="Epochs of every stage (quick runs).")
@click.option("--stages", help="Comma-separated subset of classifier,localizer,crop,weighted.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=SEED_RANGE, help="Seed of initialisation, data order and augmentation.")
@renamed_option(
    "--num-workers",
    "--workers",  # the name in elope 0.1.0: a hidden alias
    dest="num_workers",
    type=click.IntRange(0, 256),
    help="DataLoader worker processes (dataset.num_workers).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option(
    "--force", is_flag=True, help="Delete the earlier run in --out (its outputs; says which) and start over."
)
@paper_option()
@overrides_option("Override any recipe key, e.g. --set loss.lambda=1.0 --set train.amp=bf16 (repeatable).")
@click.option(
    "--allow-change",
    "allow_changes",
    multiple=True,
    metavar="KEY",
    help="With --resume: let KEY (or every key below a section, e.g. stages.crop) differ from the run's "
    "recipe. Only keys of stages not started yet (stages.<stage>.*, loss.localizer_target, "
    "dataset.crop_source); recorded in metrics.jsonl.",
)
def train_command(**given: Any) -> None:
    """Train ELoPE: classifier, localizer, crop and weighted stages (Sec. 5-6 of the paper)."""
    from elope.config import shortcut_notes
    from elope.engine.train import run_training  # torch: imported here, not for --help
    from elope.runs.recipe import resolve_config

    o = TrainOptions(**given)
    stages = None if o.stages is None else [s.strip() for s in o.stages.split(",") if s.strip()]
    options = {
        "dataset.root": None if o.root is None else str(o.root),
        "model.backbone": o.backbone,
        "model.pretrained": o.pretrained,
        "model.weights": o.weights,
        "dataset.image_size": o.image_size,
        "train.stages": stages,
        "train.device": o.device,
        "train.seed": o.seed,
        "dataset.num_workers": o.num_workers,
    }
    pairs = [(k, v) for k, v in options.items() if v is not None] + list(o.overrides)
    if o.allow_changes and not o.resume:
        raise click.UsageError("--allow-change applies to --resume only")
    output_rules("elope train", read=[o.root], run=o.out)
    checked_output(o.out, "--out", kind="dir")
    with user_errors():
        cfg = resolve_config(
            o.out, o.dataset, o.config_file, pairs,
            epochs=o.epochs, batch_size=o.batch_size, resume=o.resume, paper=o.paper,
        )  # fmt: skip
        for note in shortcut_notes(o.overrides, o.epochs, o.batch_size):  # a shortcut replaced a --set value
            click.echo(note, err=True)
        hooks = (click.get_current_context().obj or {}).get(STEP_HOOKS, ())
        run_training(
            cfg, o.out, resume=o.resume, force=o.force, allow=o.allow_changes, echo=stderr_echo, hooks=hooks
        )
    click.echo(f"done: {o.out / 'model'}", err=True)
