"""Click options that several commands share, defined once (same name, type, default and help everywhere)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = [
    "COMPILE_MODES",
    "compile_option",
    "config_option",
    "overrides_option",
    "paper_option",
    "run_option",
    "tau_option",
]

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


def tau_option(help: str = "Box threshold τ. Default: the run's.") -> Decorator:
    """``--tau``: the box threshold, in [0, 1); None means the run's (its saved model config)."""
    return click.option("--tau", default=None, type=click.FloatRange(0.0, 1.0, max_open=True), help=help)


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
