"""What moves the localization module's boxes: one-seed probes of stages 1 + 2 (docs/results.md, Table 4).

Each variant changes the recipe of the time (``elope/configs/synthetic.yaml`` before the localization
work: critters 30-60 % of the frame, 10 localizer epochs, τ 0.5) by a few keys, trains the classifier and
the localization module, picks τ for the module and for the teacher's mean map separately on the
**training** split, and scores both on the test split at those τ (IoU ≥ 0.5). One seed each: a guide for
which knob to turn, not a result; the chosen recipe is then measured with 3 seeds (``recipe_pairs.py``,
``tau_sweep.py``).

    python -m elope.research.experiments.localization_probe --out runs/probe --variants base,obj45_loc20
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from elope.config import load_config
from elope.engine.train import run_training
from elope.tasks.evaluate import evaluate_run

#: the recipe before the localization work, the base of every variant
BEFORE = {
    "dataset.synthetic.object_scale": [0.3, 0.6],
    "dataset.synthetic.part_scale": 1.0,
    "dataset.synthetic.part_contrast": 1.0,
    "stages.localizer.epochs": 10,
    "stages.localizer.lr_step": 7,
}
LONGER = {"stages.localizer.epochs": 20, "stages.localizer.lr_step": 14}
LARGER = {"dataset.synthetic.object_scale": [0.4, 0.7]}
PX224 = {"dataset.image_size": 224, "dataset.crop_source": 448, "dataset.synthetic.size": 448}
VARIANTS: dict[str, dict] = {
    "base": {},
    "loc128": {"model.localizer_input": 128},
    "loc20ep": LONGER,
    "noclutter": {"dataset.synthetic.clutter": 0.0, "dataset.synthetic.decoys": [0, 0]},
    "obj45": LARGER,
    "obj45_loc20": {**LARGER, **LONGER},
    "s224": PX224,
    "s224_loc20": {**PX224, **LONGER},
    # the recipe chosen from the rows above (elope/configs/synthetic.yaml), at the paper's 448 px (14x14 map)
    "recipe_448": {
        **LARGER,
        **LONGER,
        "dataset.synthetic.part_scale": 0.7,
        "dataset.synthetic.part_contrast": 0.4,
        "dataset.image_size": 448,
        "dataset.crop_source": 448,
        "dataset.synthetic.size": 448,
    },
}


def probe(folder: Path, overrides: dict, taus: list[float], seed: int) -> dict:
    """Train stages 1 + 2 into ``folder``; τ per method on the training split, scores on the test split."""
    start = time.time()
    stages = {"train.stages": ["classifier", "localizer"], "train.progress": False, "train.seed": seed}
    run_training(load_config("synthetic", overrides={**BEFORE, **overrides, **stages}), folder)
    trained = time.time()
    sweep = {}
    for tau in taus:
        m = evaluate_run(folder, split="train", progress=False, mean_map=True, tau=tau)
        sweep[str(tau)] = (m["loc_iou50"], m["mean_map_iou50"])
    tau_loc = max(taus, key=lambda t: sweep[str(t)][0])
    tau_mm = max(taus, key=lambda t: sweep[str(t)][1])
    test_loc = evaluate_run(folder, split="test", progress=False, mean_map=True, tau=tau_loc)["loc_iou50"]
    test_mm = evaluate_run(folder, split="test", progress=False, mean_map=True, tau=tau_mm)["mean_map_iou50"]
    return {
        "seed": seed,
        "train_sweep": sweep,
        "tau_loc": tau_loc,
        "tau_mm": tau_mm,
        "test_loc": test_loc,
        "test_mm": test_mm,
        "train_s": round(trained - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--taus", default="0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    taus = [float(t) for t in args.taus.split(",")]
    for name in args.variants.split(","):
        folder = args.out / f"{name}-s{args.seed}"
        result = folder / "probe.json"
        if not result.is_file():
            if folder.exists():
                shutil.rmtree(folder)
            result_data = {"variant": name, **probe(folder, VARIANTS[name], taus, args.seed)}
            result.write_text(json.dumps(result_data) + "\n")
        r = json.loads(result.read_text())
        print(
            f"{name}: module {100 * r['test_loc']:.1f} % (τ {r['tau_loc']}), "
            f"mean map {100 * r['test_mm']:.1f} % (τ {r['tau_mm']})"
        )


if __name__ == "__main__":
    main()
