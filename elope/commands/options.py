"""Click options that several commands share, defined once (same name, type, default and help everywhere)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from elope import writer
from elope.failures import ConfigError, TrainingError, one_line
from elope.outputs import OutputPathError
from elope.spec import TAU_RANGE

__all__ = [
    "BATCH_RANGE",
    "COMPILE_MODES",
    "EPOCHS_RANGE",
    "SEED_RANGE",
    "FiniteFloatRange",
    "checked_output",
    "compile_option",
    "config_option",
    "force_option",
    "model_file_option",
    "output_rules",
    "overrides_option",
    "paper_option",
    "renamed_option",
    "run_option",
    "stderr_echo",
    "tau_option",
    "unfinished_option",
    "user_errors",
]

#: ``--seed``: what every seeded generator here accepts (numpy's legacy seeding stops at 2**32).
SEED_RANGE = click.IntRange(0, 2**32 - 1)
#: ``--batch-size`` of every command: images per batch (``export --batch`` has the same cap).
BATCH_RANGE = click.IntRange(1, 4096)
#: ``--epochs`` of every command: epochs of every stage (the paper's longest stage has 90).
EPOCHS_RANGE = click.IntRange(0, 10_000)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (``nan`` passes every range check)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def checked_output(path: str | os.PathLike[str] | None, option: str, *, kind: str = "file") -> Path | None:
    """:func:`elope.writer.claim` as a click error (None passes through): every output path is checked
    (:func:`elope.outputs.check_output`, the writer's rules of :func:`output_rules`) and locked before the
    work, with one message shape."""
    if path is None:
        return None
    try:
        return writer.claim(path, option, kind=kind)
    except OutputPathError as error:
        raise click.ClickException(str(error)) from None


def output_rules(
    command: str,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    read: Iterable[str | os.PathLike[str] | None] = (),
    own: Iterable[str | os.PathLike[str] | None] = (),
    force: bool = False,
    own_top: bool = True,
    run: str | os.PathLike[str] | None = None,
) -> None:
    """The writer's rules (:func:`elope.writer.session`) for the rest of the running click command: the
    files and folders it reads, the folders it owns, ``--force``, whether the files directly in an owned
    folder are the command's (``own_top``), the run folder it trains (``run``). Call it before
    :func:`checked_output`."""
    context = click.get_current_context()
    rules = writer.session(
        command, inputs=inputs, read=read, own=own, force=force, echo=stderr_echo, own_top=own_top, run=run
    )
    try:
        context.with_resource(rules)
    except OutputPathError as error:
        raise click.ClickException(str(error)) from None


def force_option() -> Decorator:
    """``--force``: consent to replace an existing output file that elope did not write (parameter
    ``force``)."""
    return click.option(
        "--force",
        is_flag=True,
        help="Replace an existing output file that elope did not write (without it such a file is refused).",
    )


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def run_option(required: bool = True) -> Decorator:
    """``--run RUN``: the run folder of ``elope train`` (parameter ``run_dir``)."""
    return click.option(
        "--run",
        "run_dir",
        required=required,
        default=None,
        type=click.Path(path_type=Path),
        help="Run folder of `elope train`.",
    )


def model_file_option(help: str) -> Decorator:
    """``--model FILE``: a file written by ``elope export``, instead of ``--run`` (parameter ``model_file``)."""
    return click.option(
        "--model",
        "model_file",
        default=None,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help,
    )


def tau_option(help: str = "Box threshold τ. Default: the run's.") -> Decorator:
    """``--tau``: the box threshold, in :data:`elope.spec.TAU_RANGE`; None means the run's (its model's
    spec, ``model.json`` → ``spec.tau``)."""
    return click.option("--tau", default=None, type=FiniteFloatRange(*TAU_RANGE, max_open=True), help=help)


def unfinished_option() -> Decorator:
    """``--allow-unfinished``: use the model of a run whose stages are not all done (parameter
    ``allow_unfinished``)."""
    return click.option(
        "--allow-unfinished",
        is_flag=True,
        help="Use the model of a run that has not finished its stages (stopped, or still training): the "
        "model of its last finished stage.",
    )


def compile_option(help: str) -> Decorator:
    """``--compile [MODE]``: run through ``torch.compile`` (parameter ``compile_mode``)."""
    return click.option(
        "--compile",
        "compile_mode",
        default=None,
        is_flag=False,
        flag_value="default",
        type=click.Choice(COMPILE_MODES),
        help=help,
    )


def config_option(help: str) -> Decorator:
    """``--config FILE``: a YAML file with any subset of the recipe's keys (parameter ``config_file``)."""
    return click.option(
        "--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=help
    )


def overrides_option(help: str) -> Decorator:
    """``--set KEY=VALUE`` (repeatable; parameter ``overrides``)."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def paper_option() -> Decorator:
    """``--paper``: the paper's localization step instead of the recipes' defaults (parameter ``paper``;
    :data:`elope.config.PAPER_LOCALIZATION`)."""
    return click.option(
        "--paper",
        is_flag=True,
        help="The paper's localization step exactly (every cell above the fixed Table 2 tau, raw heatmap "
        "target, no upsampling) instead of the defaults (see docs/architecture.md).",
    )


def stderr_echo(line: str) -> None:
    """The :data:`elope.failures.Echo` the commands pass below them: ``click.echo`` on standard error."""
    click.echo(line, err=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Problems the user can fix become a one-line click error instead of a traceback."""
    # imported here: the options module stays light (``elope data --help`` loads no torch)
    from elope.data.errors import DataError
    from elope.nn.weights import WeightsError
    from elope.runs.checkpoint import CheckpointError

    try:
        yield
    except (ConfigError, TrainingError, CheckpointError, DataError, WeightsError, FileExistsError) as e:
        raise click.ClickException(one_line(e)) from None  # a DataLoader worker's traceback left out


class _RenamedOption(click.Option):
    """An option whose first name is shown in ``--help``; the others are hidden aliases (old names that
    keep working)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        names, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = names


def renamed_option(name: str, *old_names: str, dest: str, **options: Any) -> Decorator:
    """``click.option(name, *old_names, dest, ...)`` with ``old_names`` working but left out of ``--help``:
    an option renamed to match the recipe key it sets (``docs/architecture.md``, "Command-line names")."""
    return click.option(name, *old_names, dest, cls=_RenamedOption, **options)
