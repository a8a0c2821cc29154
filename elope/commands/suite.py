"""``elope suite``: the generalization suite (:mod:`elope.research.suite`)."""

from __future__ import annotations

from pathlib import Path

import click

from elope import writer
from elope.commands.options import (
    SEED_RANGE,
    checked_output,
    config_option,
    force_option,
    overrides_option,
    paper_option,
)
from elope.config import PAPER_LOCALIZATION, ConfigError, parse_override
from elope.data.birds.presets import BIRD_SUITE
from elope.data.synthetic_knobs import SUITE

_GROUPS = {"all": list(SUITE), "birds": list(BIRD_SUITE)}


def _names(text: str) -> list[str]:
    """``all`` (the critters), ``birds`` (the held-out family) or names, comma-separated."""
    names = _GROUPS.get(text) or [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITE and n not in BIRD_SUITE]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown distribution(s) {unknown or text!r}; choose from all (the critters: {', '.join(SUITE)}) "
            f"or birds (held out: {', '.join(BIRD_SUITE)}), or names from both, comma-separated",
            param_hint="--dists",
        )
    return names


@click.command("suite", short_help="The generalization suite: procedural distributions.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Suite folder.")
@click.option(
    "--dists",
    default="all",
    show_default=True,
    help=f"Distributions, comma-separated. all: the critters ({', '.join(SUITE)}), on which the recipe is "
    f"developed; birds: the held-out family ({', '.join(BIRD_SUITE)}), read once to judge it.",
)
@click.option("--seeds", type=click.IntRange(1, 1000), default=3, show_default=True, help="Paired seeds.")
@click.option(
    "--seed-offset", type=SEED_RANGE, default=0, show_default=True, help="First seed (seeds run from it up)."
)
@click.option(
    "--report", is_flag=True, help="Train nothing: tabulate the (distribution, seed)s finished in OUT."
)
@config_option("YAML file with any subset of the recipe's keys, applied to every run.")
@paper_option()
@overrides_option("Recipe override for every run (after the suite's scale).")
@force_option()
def suite_command(
    out: Path,
    dists: str,
    seeds: int,
    seed_offset: int,
    report: bool,
    config_file: Path | None,
    paper: bool,
    overrides: tuple[str, ...],
    force: bool,
) -> None:
    """The method on procedural distributions nobody tuned it on: for each distribution and seed, the GAP
    baseline, the full method and the budget-matched control on whole images, with the localization
    module's and its teacher's boxes; mean ± std over seeds and paired 95 % intervals.

    Resumable: a finished (distribution, seed) is kept; run the same command again to continue.
    Measured on a 2-core VM: 13-59 minutes per distribution and seed, two single-threaded runs side by side
    (--seed-offset); 8 distributions x 3 seeds: about 5-6 hours of both cores.
    """
    from elope.commands.options import output_rules, user_errors
    from elope.research.suite import run_suite, suite_table
    from elope.runs.lock import run_lock

    names = _names(dists)
    if seed_offset + seeds > 2**32:
        raise click.BadParameter("the last seed is not below 2**32", param_hint="--seeds")
    try:
        changes = {**(PAPER_LOCALIZATION if paper else {}), **dict(parse_override(o) for o in overrides)}
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    output_rules("elope suite", inputs=[config_file], own=[out], own_top=False, force=force)
    checked_output(out, "--out", kind="dir")
    for name in ("suite.md", "suite.json"):  # before the work: a table of the user's there is refused
        writer.refusal(out / name, "--out")
    with user_errors(), run_lock(out, "elope suite"):
        summary = run_suite(
            out,
            names,
            range(seed_offset, seed_offset + seeds),
            overrides=changes,
            config_file=config_file,
            train=not report,
            echo=lambda line: click.echo(line, err=True),
        )
    click.echo(suite_table(summary), nl=False)
    click.echo(f"written: {out / 'suite.md'}, {out / 'suite.json'}")
