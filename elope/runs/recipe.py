"""The recipe of a training run: the packaged one for a fresh run, the run's own ``config.yaml`` on resume,
then the user's file and overrides (:func:`resolve_config`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from elope.config import Config, ConfigError, load_config
from elope.runs.guard import read_run_config

__all__ = ["resolve_config"]


def resolve_config(
    out: Path,
    dataset: str | None,
    config_file: Path | None = None,
    overrides: Iterable[Any] = (),
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
        dataset, config_file, list(overrides), epochs=epochs, batch_size=batch_size, base=base, paper=paper
    )
