"""The run folder, owned by one package: its layout (:mod:`.layout`), the guard that never overwrites a run
(:mod:`.guard`), checkpoint files (:mod:`.checkpoint`), the model folder and ``model.json``
(:mod:`.model_folder`), ``metrics.jsonl`` and TensorBoard (:mod:`.metrics_log`), and a trained run as the
commands read it (:mod:`.loaded`: :class:`LoadedRun`, :func:`load_run`).
"""

from elope.runs.layout import CLASS_MEANS_FILE, MODEL_DIR, TEACHER_DIR, RunPaths, run_paths
from elope.runs.loaded import LoadedRun, load_run, resolve_model_dir
from elope.runs.model_folder import load_model, save_model

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
