"""The run-folder guard of ``elope train``: a folder that holds a run is never written into by accident.

Before a run writes anything, :func:`open_run_folder` looks at ``--out``:

* empty, missing, or holding no run: a fresh start;
* ``checkpoints/last.pt`` present: ``--resume`` continues from it (an unreadable one is refused, naming what
  else the folder holds); without ``--resume`` the run is refused;
* an earlier run's results (``model/``, ``teacher/``, any ``checkpoints/*.pt``, epoch records in
  ``metrics.jsonl``) but no ``last.pt``: refused with or without ``--resume`` (continuing is impossible and
  starting over would mix two runs in one folder); the message lists what is there and, when a stage
  checkpoint survives, how to continue from it;
* a run that was started but has trained nothing yet (``config.yaml``, the data line of ``metrics.jsonl``,
  empty ``tensorboard/``): ``--resume`` starts it with its saved recipe; without it the run is refused;
* ``--force``: the earlier run's outputs (:data:`RUN_OUTPUTS`, and ``data/`` when the run generated its
  procedural data set there) are deleted first, and the command says which; other files are left alone.
"""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from elope.config import DATASETS, STAGES, ConfigError
from elope.config.files import read_yaml
from elope.data.synthetic_files import remove_written
from elope.failures import Echo, TrainingError, to_stderr
from elope.runs.checkpoint import CheckpointError, load_checkpoint

__all__ = ["RUN_OUTPUTS", "RunFolder", "inspect_run_folder", "open_run_folder", "read_run_config"]

#: What a run writes into its folder (``docs/architecture.md``), and what ``--force`` deletes. ``evaluate
#: --examples`` adds ``examples_<split>.png``, ``elope demo`` ``predictions/``, ``elope ablate``
#: ``result.json``; they describe the old run too, so they go with it.
RUN_OUTPUTS = (
    "checkpoints",
    "model",
    "teacher",
    "metrics.jsonl",
    "tensorboard",
    "predictions",
    "result.json",
    "config.yaml",
)
_EXAMPLES = "examples_*.png"
_DATA = "data"  # RUN/data: the procedural set a synthetic run generates when no --root is given


class RunFolder:
    """What a folder holds of a run (read only)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.present = [name for name in RUN_OUTPUTS if (out / name).exists()] + sorted(
            p.name for p in out.glob(_EXAMPLES)
        )
        folder = out / "checkpoints"
        self.checkpoints = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
        self.records = _epoch_records(out / "metrics.jsonl")

    @property
    def last(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def holds_run(self) -> bool:
        """Anything a run writes is there."""
        return bool(self.present)

    @property
    def holds_results(self) -> bool:
        """Something was trained: a checkpoint, an exported model, or an epoch record."""
        return bool(
            self.checkpoints
            or (self.out / "model").exists()
            or (self.out / "teacher").exists()
            or self.records
        )

    def describe(self) -> str:
        """``config.yaml, metrics.jsonl (4 epoch records), model/, checkpoints/{classifier.pt, last.pt}``."""
        parts = []
        for name in self.present:
            if name == "checkpoints":
                listed = ", ".join(self.checkpoints) if self.checkpoints else "no .pt file"
                parts.append(f"checkpoints/ ({listed})")
            elif name == "metrics.jsonl":
                parts.append(f"metrics.jsonl ({self.records} epoch record(s))")
            else:
                parts.append(name + ("/" if (self.out / name).is_dir() else ""))
        return ", ".join(parts) or "nothing of a run"

    def stage_hint(self) -> str:
        """How to continue from the latest surviving end-of-stage checkpoint, if any."""
        stages = [s for s in STAGES if f"{s}.pt" in self.checkpoints]
        if not stages:
            return ""
        name = f"{stages[-1]}.pt"
        return (
            f" checkpoints/{name} holds the end of stage {stages[-1]!r}: copy it to checkpoints/last.pt and "
            "pass --resume to continue from there."
        )


def _epoch_records(path: Path) -> int:
    """Number of epoch records (lines with a ``stage`` and no ``event``: the localizer check is an event) in
    ``metrics.jsonl``; unreadable lines count."""
    if not path.is_file():
        return 0
    count = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    count += 1  # not ours to judge: keep it
                    continue
                count += isinstance(record, dict) and "stage" in record and "event" not in record
    except OSError:
        return 1
    return count


def inspect_run_folder(out: str | Path) -> RunFolder:
    """What ``out`` holds of a run."""
    return RunFolder(Path(out))


def _error(message: str) -> Exception:
    return TrainingError(message)  # the error every caller of run_training reports


#: The files a run writes in each of its folders (``fnmatch`` patterns); the writer's own files (its record,
#: locks, temporaries) anywhere. ``--force`` deletes a folder only when it holds nothing else.
_RUN_FILES = {
    "checkpoints": ("*.pt",),
    "model": ("model.json", "*.safetensors"),
    "teacher": ("model.json", "*.safetensors"),
    "tensorboard": ("events.out.tfevents.*",),
    "predictions": ("*.png",),
}
_WRITER_FILES = (".elope-written", "*.elope-lock", "*.elope-tmp")


def _foreign_files(out: Path, names: list[str]) -> list[str]:
    """The files (and folders) inside the run's folders ``names`` that a run does not write: the user's."""
    foreign = []
    if names == ["config.yaml"] and not _run_config(out / "config.yaml"):  # alone: nothing says a run
        foreign.append("config.yaml (not a run's recipe)")
    for name, what in (("metrics.jsonl", "not a run's log"), ("result.json", "not an ablation row's result")):
        if name in names and not _written_by_a_run(out / name):
            foreign.append(f"{name} ({what})")
    for name in names:
        path = out / name
        if name not in _RUN_FILES or path.is_symlink() or not path.is_dir():
            continue
        for entry in sorted(path.iterdir()):
            patterns = (*_RUN_FILES[name], *_WRITER_FILES)
            ours = (
                entry.is_file() and not entry.is_symlink() and any(fnmatch(entry.name, p) for p in patterns)
            )
            if not ours:
                foreign.append(f"{name}/{entry.name}" + ("/" if entry.is_dir() else ""))
    return foreign


def _written_by_a_run(path: Path) -> bool:
    """Whether the top-level ``metrics.jsonl`` / ``result.json`` reads as a run wrote it: the log opens with
    its data line (``{"event": "data", ...}``, or is empty: a run killed before its first line), the result
    is an ablation row's (``row``, ``seed``, ``top1``); a file of the user's by that name is not deleted
    (a fresh sweep after the writer)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as handle:
            head = handle.readline(1 << 20) if path.name == "metrics.jsonl" else handle.read(1 << 20)
        if not head.strip():
            return path.name == "metrics.jsonl"
        data = json.loads(head)
    except (OSError, ValueError):
        return False
    if path.name == "metrics.jsonl":
        return isinstance(data, dict) and data.get("event") == "data"
    return isinstance(data, dict) and {"row", "seed", "top1"} <= set(data)


def _run_config(path: Path) -> bool:
    """Whether ``path`` reads as a run's saved recipe (a file a run wrote, not the user's notes)."""
    try:
        read_run_config(path)
    except ConfigError:
        return False
    return True


def _remove_outputs(folder: RunFolder, generated_data: bool) -> list[str]:
    """Delete the earlier run's outputs (and the files of its generated data set); returns what was deleted.
    A run folder holding files a run does not write (``model/weights.bin`` of the user) is refused first,
    nothing deleted (a fresh sweep after the writer, reliability S-W1)."""
    out = folder.out
    names = list(folder.present)
    foreign = _foreign_files(out, names)
    if foreign:
        raise _error(
            f"--force deletes only what a run writes, and {out} holds files that no run writes: "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}; move them away or choose another "
            "--out. Nothing was changed."
        )
    removed = []
    for name in names:  # checkpoints first: a folder killed half-way through is refused, never resumed
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(name + ("/" if name in _RUN_FILES else ""))
    data = out / _DATA
    if generated_data and (data / "elope_synthetic.json").is_file():
        remove_written(data)  # only the files of the set: anything the user put there is kept
        if data.is_dir() and not any(data.iterdir()):
            data.rmdir()
        removed.append(_DATA + "/")
    return removed


def _resume_point(folder: RunFolder, resume: bool) -> dict[str, Any] | None:
    """The checkpoint ``--resume`` continues from (None: start anew); a folder holding a run is refused."""
    out = folder.out
    where = f"{out} holds: {folder.describe()}."
    alternatives = "pass --force to delete it and start over, or choose another --out"
    if folder.last.is_file():
        if not resume:
            raise _error(
                f"{out} already holds a run ({folder.last}); pass --resume to continue it (or to add stages), "
                f"{alternatives}. Nothing was changed."
            )
        try:
            return load_checkpoint(folder.last)
        except CheckpointError as error:
            raise _error(
                f"cannot resume: {error}. {where}{folder.stage_hint()} Otherwise {alternatives}. "
                "Nothing was changed."
            ) from None
    if folder.holds_results:
        if resume:
            raise _error(
                f"cannot resume {out}: {folder.last} is missing, and the folder holds an earlier run's results; "
                f"{where}{folder.stage_hint()} Otherwise {alternatives}. Nothing was changed."
            )
        raise _error(
            f"{out} already holds an earlier run (without checkpoints/last.pt, so it cannot be resumed); "
            f"{where}{folder.stage_hint()} Otherwise {alternatives}. Nothing was changed."
        )
    if folder.holds_run and not resume:
        raise _error(
            f"{out} holds a run that was started but has trained nothing yet ({folder.describe()}); pass "
            f"--resume to start it with its saved config.yaml, {alternatives}. Nothing was changed."
        )
    return None


def open_run_folder(
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    generated_data: bool = False,
    is_main: bool = True,
    echo: Echo = to_stderr,
) -> dict[str, Any] | None:
    """Check ``out`` before a run writes into it; return the checkpoint to resume from (None: start anew).

    Args:
        out: the run folder (``--out``).
        resume: ``--resume`` was given: continue from ``checkpoints/last.pt``.
        force: ``--force`` was given: delete the earlier run's outputs first (on the main process only).
        generated_data: the run generates its data set into ``out/data`` (synthetic without ``--root``);
            with ``force`` a data set generated there before is deleted too, so it is made anew from the
            recipe.
        is_main: whether this is the main process (the only one that deletes).
        echo: where ``--force`` says what it deleted.

    Raises:
        TrainingError: ``out`` holds a run that this call must not write into; nothing was changed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise _error(f"--out {out} is a file, not a folder: choose a folder for the run")
    if force and resume:
        raise _error("--force starts the run over and --resume continues it: pass one of them")
    folder = inspect_run_folder(out)
    if force:
        if is_main and folder.holds_run:
            removed = _remove_outputs(folder, generated_data)
            echo(f"--force: deleted the earlier run in {out}: {', '.join(removed)}")
        return None
    return _resume_point(folder, resume)


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The saved recipe of a run (``RUN/config.yaml``) for ``--resume``, through the normal YAML checks.

    Raises:
        ConfigError: the file is missing, not YAML, holds a tag (``!!python/object``), is not a mapping, or
            lacks ``dataset.name``; the message names the file. (Keys and types are checked afterwards by
            :func:`elope.config.load_config`, naming the key.)
    """
    path = Path(path)
    if not path.is_file():
        folder = inspect_run_folder(path.parent)
        there = f"; {path.parent} holds: {folder.describe()}" if folder.holds_run else ""
        raise ConfigError(f"nothing to resume: {path} not found{there}")
    fix = "restore the file, or start over with --force (or another --out)"
    try:
        data = read_yaml(path)
    except ConfigError as error:
        raise ConfigError(f"cannot resume: {error}; the run's saved recipe is damaged: {fix}") from None
    section = data.get("dataset")
    if not isinstance(section, dict) or section.get("name") not in DATASETS:
        found = section.get("name") if isinstance(section, dict) else section
        raise ConfigError(
            f"cannot resume: {path}: config key 'dataset.name' must be one of {', '.join(DATASETS)}, got "
            f"{found!r}; the run's saved recipe is damaged: {fix}"
        )
    return data
