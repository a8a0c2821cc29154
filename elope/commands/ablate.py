"""``elope ablate``: the rows of Table 5 or the K sweep of Fig. 7 (:mod:`elope.research.ablate`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope import writer
from elope.commands.options import (
    EPOCHS_RANGE,
    SEED_RANGE,
    checked_output,
    config_option,
    force_option,
    output_rules,
    overrides_option,
    paper_option,
    stderr_echo,
)
from elope.config import DATASETS, PAPER_LOCALIZATION, ConfigError, load_config, parse_override
from elope.data.errors import DataError
from elope.failures import CheckpointError, TrainingError, one_line, short_repr
from elope.runs.lock import run_lock


def _parse_rows(text: str | None, count: int) -> list[int]:
    if text is None:
        return list(range(count))
    indices: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise click.BadParameter(
                f"expected row numbers like 1,3-5, got {short_repr(text)}", param_hint="--rows"
            ) from None
        if first > last:
            raise click.BadParameter(f"the range {part} is empty: write {last}-{first}", param_hint="--rows")
        for i in (first, last):
            if not 1 <= i <= count:
                raise click.BadParameter(f"row {i} is not in 1..{count}", param_hint="--rows")
        indices += [i - 1 for i in range(first, last + 1) if i - 1 not in indices]
    return indices


def _parse_ks(text: str, positions: int) -> list[int]:
    """``--ks``: positive whole numbers or ``all`` (= H·W), at most H·W."""
    k_values = set()
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            k_values.add(positions)
            continue
        if not part.isdigit() or int(part) < 1:
            raise click.BadParameter(
                f"{short_repr(part)} is not a K: give positive whole numbers or 'all', e.g. 1,2,4,all",
                param_hint="--ks",
            )
        k_values.add(int(part))
    return sorted(k_values)


def _common_overrides(
    overrides: tuple[str, ...], backbone: str | None, image_size: int | None
) -> dict[str, Any]:
    """The config overrides of every row: the ``--set`` pairs, then ``--backbone`` and ``--image-size``."""
    common: dict[str, Any] = dict(parse_override(o) for o in overrides)
    if backbone:
        common["model.backbone"] = backbone
    if image_size:
        common["dataset.image_size"] = image_size
    return common


def _k_sweep(out: Path, ks: str, seeds: list[int], shared: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the K sweep of Fig. 7 for the K values of ``--ks`` ('all' = H·W), plot it and print its table."""
    from elope.research.ablate import (
        feature_map_positions,
        format_markdown,
        k_sweep_rows,
        plot_k_sweep,
        run_ablation,
    )

    cfg = load_config(shared["dataset"], shared["config_file"], overrides=shared["overrides"])
    _parse_ks(ks, 1 << 30)  # the syntax, before the backbone is built
    positions = feature_map_positions(cfg.model.backbone, cfg.dataset.image_size)
    k_values = _parse_ks(ks, positions)
    if k_values[-1] > positions:
        raise click.BadParameter(
            f"K={k_values[-1]} exceeds H·W={positions} of the last feature map at "
            f"{cfg.dataset.image_size} px",
            param_hint="--ks",
        )
    title = f"K sweep (Fig. 7), H·W = {positions}"
    summary = run_ablation(
        out, k_sweep_rows(k_values), seeds, name="k_sweep", title=title, **shared, echo=stderr_echo
    )
    plot_k_sweep(summary, k_values, out / "k_sweep.png", positions)
    click.echo(format_markdown(summary, title))
    return summary


@dataclass(frozen=True)
class AblateOptions:
    """The options of ``elope ablate`` as click parses them (one field per option, named by its ``dest``)."""

    dataset: str
    root: Path | None
    out: Path
    study: str
    config_file: Path | None
    rows: str | None
    ks: str
    seeds: int
    seed_offset: int
    epochs: int | None
    report: bool
    backbone: str | None
    image_size: int | None
    paper: bool
    overrides: tuple[str, ...]
    force: bool


@click.command("ablate", short_help="The rows of Table 5, or the K sweep of Fig. 7.")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="synthetic",
    show_default=True,
    help="Recipe and data set.",
)
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), help="Dataset folder (synthetic: generated)."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Ablation folder.")
@click.option(
    "--study",
    type=click.Choice(["table5", "k-sweep"]),
    default="table5",
    show_default=True,
    help="table5: the rows of Table 5; k-sweep: K in --ks (Fig. 7).",
)
@config_option("YAML file with any subset of the recipe's keys, applied to every row.")
@click.option("--rows", help="Table 5 rows to run, 1-based (e.g. 1,10 or 1-3); default all.")
@click.option("--ks", default="1,2,4,8,16,all", show_default=True, help="K values of the sweep; 'all' = H·W.")
@click.option("--seeds", type=click.IntRange(1, 1000), default=1, show_default=True, help="Seeds per row.")
@click.option(
    "--seed-offset", type=SEED_RANGE, default=0, show_default=True, help="First seed (seeds run from it up)."
)
@click.option("--epochs", type=EPOCHS_RANGE, help="Epochs of every stage (the shared budget).")
@click.option(
    "--report",
    is_flag=True,
    help="Train nothing: write the table from the row-seeds already finished in OUT.",
)
@click.option("--backbone", help="Backbone of every row.")
@click.option("--image-size", type=click.IntRange(16, 4096), help="Input side of every row.")
@paper_option()
@overrides_option("Config override for every row.")
@force_option()
def ablate_command(**given: Any) -> None:
    """Train and evaluate the rows of the paper's Table 5 (or a K sweep, Fig. 7) with one shared budget.

    Prints, and writes as Markdown and JSON under OUT, test top-1 accuracy (mean ± std over seeds) with the
    paper's CUB numbers beside each row.
    """
    o = AblateOptions(**given)
    from elope.research.ablate import TABLE5, format_markdown, run_ablation  # torch: not for --help

    try:
        common = _common_overrides(o.overrides, o.backbone, o.image_size)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    shared: dict[str, Any] = {
        "dataset": o.dataset,
        "root": o.root,
        "epochs": o.epochs,
        "overrides": {**(PAPER_LOCALIZATION if o.paper else {}), **common},
        "config_file": o.config_file,
        "train": not o.report,
    }
    seed_list = list(range(o.seed_offset, o.seed_offset + o.seeds))
    if seed_list[-1] >= 2**32:
        raise click.BadParameter(f"the last seed, {seed_list[-1]}, is not below 2**32", param_hint="--seeds")
    selected = [TABLE5[i] for i in _parse_rows(o.rows, len(TABLE5))] if o.study == "table5" else []
    if o.study == "k-sweep":
        _parse_ks(o.ks, 1 << 30)
    output_rules(
        "elope ablate", inputs=[o.config_file], read=[o.root], own=[o.out], own_top=False, force=o.force
    )
    checked_output(o.out, "--out", kind="dir")
    names = (
        ("ablation.md", "ablation.json")
        if o.study == "table5"
        else ("k_sweep.md", "k_sweep.json", "k_sweep.png")
    )
    for name in names:  # before the work: a table of the user's there is refused
        writer.refusal(o.out / name, "--out")
    try:
        with run_lock(o.out, "elope ablate"):
            if o.study == "table5":
                summary = run_ablation(o.out, selected, seed_list, **shared, echo=stderr_echo)
                click.echo(format_markdown(summary, "Ablation (Table 5)"))
            else:
                summary = _k_sweep(o.out, o.ks, seed_list, shared)
    except (ConfigError, TrainingError, ValueError, DataError, CheckpointError) as error:
        raise click.ClickException(one_line(error)) from error
    if any(e["top1"] is None or math.isnan(e["top1"]) for e in summary):
        raise click.ClickException("some rows produced no result")
