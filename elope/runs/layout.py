"""The layout of a run folder (``docs/architecture.md``): one name for every file a run writes.

```
RUN/config.yaml             resolved config
RUN/metrics.jsonl           one JSON object per epoch and stage (first line: the data)
RUN/tensorboard/            TensorBoard event files
RUN/checkpoints/<stage>.pt  end-of-stage checkpoint; RUN/checkpoints/last.pt the latest (atomic writes)
RUN/model/                  the final model: model.safetensors + model.json (+ class_means.safetensors)
RUN/teacher/                the stage-1 classifier, same format (the localization module's teacher)
RUN/crops/                  the crop pipeline, where the crop decision chose whole images for RUN/model
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLASS_MEANS_FILE",
    "CROPS_DIR",
    "MODEL_DIR",
    "TEACHER_DIR",
    "RunPaths",
    "read_by_run",
    "run_paths",
]

MODEL_DIR = "model"  # RUN/model: what `evaluate`, `predict` and `export` load
TEACHER_DIR = "teacher"  # RUN/teacher: the stage-1 classifier, the localization module's teacher
CROPS_DIR = "crops"  # RUN/crops: the crop pipeline where the crop decision chose whole images
CLASS_MEANS_FILE = "class_means.safetensors"  # RUN/model/class_means.safetensors, key "means" (C, dim)


@dataclass(frozen=True)
class RunPaths:
    """The files and folders of the run in ``out``."""

    out: Path

    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.out / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def model(self) -> Path:
        return self.out / MODEL_DIR

    @property
    def teacher(self) -> Path:
        return self.out / TEACHER_DIR

    @property
    def crops(self) -> Path:
        return self.out / CROPS_DIR


def run_paths(out: str | Path) -> RunPaths:
    """The layout of the run folder ``out``."""
    return RunPaths(Path(out))


def read_by_run(
    run_dir: str | Path | None, root: str | Path | None = None, *, dataset: bool = True
) -> list[Path]:
    """What a command that reads the run ``run_dir`` must never write into (:mod:`elope.writer`, ``read``):
    its recipe, records and lock, its model, teacher, crops, checkpoints and TensorBoard folders (the whole
    folder when ``run_dir`` is a model folder), and the data set it reads: ``root``, else the one its
    ``model.json`` records (``dataset=False``: a command that reads no data set). Other files of the run folder (``examples_test.png``, an ``--json`` written
    there) are not the run's."""
    if run_dir is None:
        return [Path(root)] if root is not None else []
    out = Path(run_dir)
    if (out / "model.json").is_file():
        meta_file, found = out / "model.json", [out]
    else:
        meta_file = out / MODEL_DIR / "model.json"
        paths = run_paths(out)
        found = [paths.config, paths.metrics, out / ".elope.lock", paths.model, paths.teacher, paths.crops]
        found += [paths.checkpoints, paths.tensorboard]
    if root is None and dataset:
        try:
            root = json.loads(meta_file.read_text(encoding="utf-8")).get("root")
        except (OSError, ValueError, AttributeError):
            root = None
    return found + ([Path(root)] if root else [])
