"""Development runs for the generalization suite's recipe, on *development* data only.

The suite (``elope suite``) reports test splits of sets generated with seed 0; the recipe's localization
choices were made here, before any suite run, on sets of the same distributions generated with seed 100, and
only on their **training** split (the boxes of the training images are used to score localization; no test
image is read). For each development distribution: stage 1 once, then the localization module trained from
that same stage 1 with several budgets and both targets (the run folder after stage 1 copied, stage 2 run
in each copy). ``suite_dev_scores.py`` then scores boxes of every module and of the teacher's mean map for
every τ and box rule on the training split.

    python -m elope.research.experiments.suite_dev --out runs/suite-dev --dists small,medium,large,cluttered
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from elope.config import load_config
from elope.engine.train import run_training

DEV_SEED = 100
# the suite's common recipe (fixed before the suite ran; see elope/research/suite.py)
COMMON = {
    "dataset.image_size": 224,
    "dataset.crop_source": 448,
    "dataset.synthetic.classes": 12,
    "dataset.synthetic.train": 30,
    "dataset.synthetic.test": 2,
    "dataset.synthetic.size": 448,
    "dataset.synthetic.seed": DEV_SEED,
    "dataset.synthetic.object_scale": None,
    "dataset.synthetic.part_scale": None,
    "dataset.synthetic.part_contrast": None,
    "dataset.synthetic.clutter": None,
    "stages.classifier.epochs": 4,
    "stages.classifier.lr": 0.01,
    "stages.classifier.lr_step": 3,
    "train.progress": False,
}
VARIANTS = {  # name -> stage-2 overrides
    "std-l10": {"stages.localizer.epochs": 10, "stages.localizer.lr_step": 7},
    "std-l20": {"stages.localizer.epochs": 20, "stages.localizer.lr_step": 14},
    "std-l40": {"stages.localizer.epochs": 40, "stages.localizer.lr_step": 28},
    "raw-l20": {
        "stages.localizer.epochs": 20,
        "stages.localizer.lr_step": 14,
        "loss.localizer_target": "raw",
    },
}


def train(folder: Path, overrides: dict, stages: list[str]) -> None:
    cfg = load_config("synthetic", overrides={**overrides, "train.stages": stages})
    allow = ("stages.localizer", "loss.localizer_target")  # the variant's keys, on stage 1's copy
    run_training(cfg, folder, resume=(folder / "config.yaml").is_file(), allow=allow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dists", default="small,medium,large,cluttered")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    for dist in args.dists.split(","):
        base = args.out / dist / "stage1"
        common = {**COMMON, "dataset.synthetic.difficulty": dist}
        if not (base / "checkpoints" / "classifier.pt").is_file():
            train(base, common, ["classifier"])
        common["dataset.root"] = str((base / "data").resolve())
        for name in args.variants.split(","):
            folder = args.out / dist / name
            if (folder / "teacher" / "model.json").is_file() and (
                folder / "checkpoints" / "localizer.pt"
            ).is_file():
                continue
            if not folder.exists():
                shutil.copytree(base, folder, ignore=shutil.ignore_patterns("data", "tensorboard"))
            train(folder, {**common, **VARIANTS[name]}, ["classifier", "localizer"])
            print(f"{dist}/{name} done", flush=True)


if __name__ == "__main__":
    main()
