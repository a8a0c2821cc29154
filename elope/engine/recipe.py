"""A resumed run keeps its recipe (``docs/reliability.md``): what ``--resume`` may change, and what it may not.

``elope train --resume`` (and :func:`elope.engine.train.run_training` with ``resume=True``) compares the
resolved recipe with the one the run was trained with: the checkpoint's (``checkpoints/last.pt``), or
``config.yaml`` when nothing was trained yet. Three kinds of keys:

* **session keys** (:data:`SESSION_KEYS`) say how this invocation runs, not what it computes: the device,
  the progress bar, the loader processes, how often a checkpoint is written, which stages to run now
  (``train.stages``: done stages stay done) and where the data lies (``dataset.root``, e.g. after the run
  folder was moved: the data found there must be the run's, :func:`check_same_data`). They may differ.
* keys of stages that have **not started** yet may change when the user names them:
  ``--allow-change KEY`` (``run_training(..., allow=...)`` in Python; a section such as ``stages.crop`` names every key
  below it). :func:`stages_of` says which stages a key changes: ``stages.<stage>.*`` its stage,
  ``loss.localizer_target`` the localizer, ``dataset.crop_source`` the crop and weighted stages, any
  other key every stage (so it can change only while nothing has been trained). The change is recorded
  in ``metrics.jsonl`` as ``{"event": "recipe_change", "changed": {key: {"from", "to"}}, ...}``.
* every other difference is refused, naming each key with both values.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from elope import writer
from elope.config import STAGES, Config, ConfigError, load_config, parse_override
from elope.failures import Echo, TrainingError, short_repr, to_stderr
from elope.runs.guard import open_run_folder, read_run_config
from elope.runs.layout import run_paths
from elope.runs.lock import run_lock
from elope.runs.metrics_log import append_record, truncate_metrics

__all__ = [
    "SESSION_KEYS",
    "check_dataset_root",
    "check_recipe_change",
    "check_same_data",
    "open_run",
    "record_recipe_change",
    "resolve_config",
    "resume_changes",
    "shortcut_notes",
    "stages_of",
    "start_metrics",
]

SESSION_KEYS = (
    "train.device",
    "train.progress",
    "train.checkpoint_every_steps",
    "train.stages",
    "dataset.num_workers",
    "dataset.root",
)
_ONE_STAGE_KEYS = {
    "loss.localizer_target": ("localizer",),
    "dataset.crop_source": ("crop", "weighted"),
    "model.box_margin": ("crop", "weighted"),
    "train.crop_decision": ("crop", "weighted"),
}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):  # an empty section adds no key
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def stages_of(key: str) -> tuple[str, ...]:
    """The stages whose training a recipe key changes."""
    parts = key.split(".")
    if parts[0] == "stages" and len(parts) > 1 and parts[1] in STAGES:
        return (parts[1],)
    return _ONE_STAGE_KEYS.get(key, STAGES)


def _named(key: str, allow: Collection[str]) -> bool:
    return any(key == a or key.startswith(a.rstrip(".") + ".") for a in allow)


def _normalised(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved recipe with the defaults of keys added since it was written (as ``load_config`` fills them)."""
    try:
        return Config.from_dict(saved).to_dict()
    except ConfigError:
        return dict(saved)


def recipe_changes(saved: Mapping[str, Any], now: Config) -> dict[str, tuple[Any, Any]]:
    """``key -> (saved value, value now)`` for every recipe key that differs, session keys left out."""
    old, new = flatten(_normalised(saved)), flatten(now.to_dict())
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and key not in SESSION_KEYS
    }


def _saved_recipe(out: Path, ckpt: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], str]:
    if ckpt is not None and isinstance(ckpt.get("config"), Mapping):
        return ckpt["config"], "checkpoints/last.pt"
    return read_run_config(out / "config.yaml"), "config.yaml"


def check_recipe_change(
    cfg: Config, out: Path, ckpt: Mapping[str, Any] | None, allow: Collection[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """The recipe changes a resume of ``out`` makes (``allow``: the keys ``--allow-change`` names).

    Raises:
        TrainingError: a key differs that may not: the message lists every such key with both values.
    """
    keys = flatten(cfg.to_dict())
    if unknown := [a for a in allow if not any(_named(k, [a]) for k in keys)]:
        raise TrainingError(
            f"--allow-change {short_repr(unknown[0])}: no such recipe key (e.g. stages.crop.epochs)"
        )
    saved, source = _saved_recipe(out, ckpt)
    changes = recipe_changes(saved, cfg)
    started = set((ckpt or {}).get("completed", [])) | {(ckpt or {}).get("stage")} - {None}
    late = {k: sorted(set(stages_of(k)) & started, key=STAGES.index) for k in changes}
    refused = [k for k in changes if not _named(k, allow) or late[k]]
    if not refused:
        return changes
    listed = ", ".join(f"{k} {short_repr(changes[k][0])} -> {short_repr(changes[k][1])}" for k in refused)
    ran = [f"{k} (stage {', '.join(late[k])} has run)" for k in refused if _named(k, allow) and late[k]]
    free = [k for k in refused if not late[k]]
    raise TrainingError(
        f"--resume would change the recipe of {out} (as {out / source} records it): {listed}. "
        + (f"These cannot change any more: {'; '.join(ran)}. " if ran else "")
        + "A resumed run keeps its recipe: drop these options"
        + (f", or pass --allow-change KEY for {', '.join(free)} (stages not started yet)" if free else "")
        + ", or start a new run (--force, or another --out). Nothing was changed."
    )


def resume_changes(
    cfg: Config, out: Path, ckpt: Mapping[str, Any] | None, resume: bool, allow: Collection[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """What a resume of ``out`` changes (:func:`check_recipe_change`; {} for a fresh run), after checking
    that its dataset is still where the recipe says (:func:`check_dataset_root`)."""
    if not resume or (ckpt is None and not run_paths(out).config.is_file()):
        return {}
    changes = check_recipe_change(cfg, out, ckpt, allow)
    check_dataset_root(cfg, out)
    return changes


def open_run(
    cfg: Config,
    out: Path,
    lock: ExitStack,
    is_main: bool = True,
    *,
    resume: bool,
    force: bool,
    allow: Collection[str] = (),
    echo: Echo = to_stderr,
) -> tuple[dict[str, Any] | None, dict[str, tuple[Any, Any]]]:
    """Lock ``out`` for the run (the lock joins ``lock``; the main process only), check it
    (:func:`elope.runs.guard.open_run_folder`: the checkpoint to resume from, or None; ``--force`` says
    through ``echo`` what it deleted) and, on resume, the recipe (:func:`resume_changes`). Returns
    ``(checkpoint, allowed changes)``."""
    if is_main:
        lock.enter_context(run_lock(out, "elope train"))
    generated = cfg.dataset.root is None
    ckpt = open_run_folder(
        out, resume=resume, force=force, generated_data=generated, is_main=is_main, echo=echo
    )
    return ckpt, resume_changes(cfg, out, ckpt, resume, allow)


def start_metrics(
    out: Path,
    data: dict[str, Any],
    ckpt: Mapping[str, Any] | None,
    changes: Mapping[str, tuple[Any, Any]],
    completed: list[str],
) -> list[str]:
    """``metrics.jsonl`` as the run starts (main process): a fresh run writes the data line; one resumed
    from ``ckpt`` checks that the data found is the run's (:func:`check_same_data`) and cuts the file back
    to the checkpoint's records (``metrics_lines``), and to whole records (a kill in the middle of a line
    leaves a broken one); an allowed recipe change is appended (:func:`record_recipe_change`). Returns what
    to tell the user."""
    path = run_paths(out).metrics
    notes: list[str | None] = []
    if ckpt is not None:
        check_same_data(path, data)
        _, note = truncate_metrics(path, int(ckpt["metrics_lines"]), data)
        notes.append(note)
    else:
        writer.write_text(path, json.dumps(data) + "\n")
    notes.append(record_recipe_change(out, changes, completed))
    return [n for n in notes if n]


def record_recipe_change(
    out: Path, changes: Mapping[str, tuple[Any, Any]], completed: list[str]
) -> str | None:
    """Append the allowed changes to ``metrics.jsonl`` (one ``recipe_change`` record); returns the line
    to print, or None when nothing changed."""
    if not changes:
        return None
    record = {
        "event": "recipe_change",
        "changed": {k: {"from": a, "to": b} for k, (a, b) in changes.items()},
        "completed": list(completed),
    }
    append_record(run_paths(out).metrics, record)
    listed = ", ".join(f"{k} {short_repr(a)} -> {short_repr(b)}" for k, (a, b) in changes.items())
    return f"--allow-change: {listed} (recorded in metrics.jsonl)"


def check_dataset_root(cfg: Config, out: Path) -> None:
    """A resumed run's ``dataset.root`` must exist; a moved run folder is told about ``--root``."""
    root = cfg.dataset.root
    if root is None or Path(root).exists():
        return
    generated = out / "data"
    hint = (
        f"; the run folder holds its generated data set: pass --root {generated}"
        if (generated / "elope_synthetic.json").is_file() and Path(root).resolve() != generated.resolve()
        else "; pass --root with the dataset's new place"
    )
    raise TrainingError(
        f"the run's dataset.root {root} does not exist (was it moved, or the run folder?){hint}"
    )


def check_same_data(metrics: Path, data: Mapping[str, Any]) -> None:
    """On resume: the data found now (``data``, the first line of ``metrics.jsonl``) must be the run's."""
    try:
        with open(metrics, encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return  # no data line to compare with (an old or damaged record): nothing to say
    keys = ("dataset", "classes", "train", "val")
    if (
        not isinstance(first, dict)
        or first.get("event") != "data"
        or all(first.get(k) == data[k] for k in keys)
    ):
        return
    differ = ", ".join(
        f"{k} {short_repr(first.get(k))} then, {short_repr(data[k])} now"
        for k in keys
        if first.get(k) != data[k]
    )
    raise TrainingError(
        f"the data at {data['root']} is not the data this run was trained on ({metrics}: {differ}); "
        "resume with the run's data (--root), or start a new run"
    )


def shortcut_notes(overrides: Iterable[Any], epochs: int | None, batch_size: int | None) -> list[str]:
    """One line per ``--set stages.S.epochs|batch_size=V`` that ``--epochs`` / ``--batch-size`` replaces
    (a shortcut sets that field of every stage, so it wins)."""
    notes = []
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        field = key.rpartition(".")[2]
        shortcut = {"epochs": epochs, "batch_size": batch_size}.get(field)
        if key.startswith("stages.") and shortcut is not None and value != shortcut:
            flag = "--" + field.replace("_", "-")
            notes.append(
                f"note: {flag} {shortcut} replaces --set {key}={short_repr(value)} (it sets every stage)"
            )
    return notes


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
