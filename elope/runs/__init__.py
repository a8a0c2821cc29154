"""The run folder, owned by one package: its layout (:mod:`.layout`), the guard that never overwrites a run
(:mod:`.guard`), checkpoint files (:mod:`.checkpoint`), the model folder and ``model.json``
(:mod:`.model_folder`), ``metrics.jsonl`` and TensorBoard (:mod:`.metrics_log`), and a trained run as the
commands read it (:mod:`.loaded`: :class:`LoadedRun`, :func:`load_run`).

Resuming is here too, as far as it does not need the live training run: the recipe of a run, fresh or
resumed (:mod:`.recipe`), what a resume may change (:mod:`.resume`), the folder opened for training
(:mod:`.start`), checkpoint files, RNG states and the architecture check (:mod:`.checkpoint`);
:mod:`elope.engine.checkpointing` puts the live run (model, optimizer, the position in a stage, every
process's RNG) into a checkpoint and back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from elope.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and editors
    from elope.runs.layout import CLASS_MEANS_FILE, MODEL_DIR, TEACHER_DIR, RunPaths, run_paths
    from elope.runs.loaded import LoadedRun, load_run, resolve_model_dir
    from elope.runs.model_folder import load_model, save_model

# Imported on first use (PEP 562): `elope --help` and the commands' option lists read light modules of this
# package (its errors, names and knobs) without importing torch (tests/test_cli_help.py).
_LAZY: dict[str, str] = {
    "CLASS_MEANS_FILE": "elope.runs.layout",
    "LoadedRun": "elope.runs.loaded",
    "MODEL_DIR": "elope.runs.layout",
    "RunPaths": "elope.runs.layout",
    "TEACHER_DIR": "elope.runs.layout",
    "load_model": "elope.runs.model_folder",
    "load_run": "elope.runs.loaded",
    "resolve_model_dir": "elope.runs.loaded",
    "run_paths": "elope.runs.layout",
    "save_model": "elope.runs.model_folder",
}

__all__ = [
    "CLASS_MEANS_FILE",
    "MODEL_DIR",
    "TEACHER_DIR",
    "LoadedRun",
    "RunPaths",
    "load_model",
    "load_run",
    "resolve_model_dir",
    "run_paths",
    "save_model",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
