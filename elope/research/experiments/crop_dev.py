"""Development runs for the crop margin and the crop decision (issue 28), on *development* draws of the
critter family only (data seed 300: never the suite's seed-0 sets, never the second family).

For each distribution and seed: stages 1-2 once, with the validation split the crop decision reads
(``dataset.val_fraction`` 0.1, ``train.crop_decision: holdout``); then the crop and weighted stages from that
same stage 2 for every margin of ``--margins`` (the run folder copied, resumed with ``model.box_margin``
changed). Each copy is scored on the development draw's test split: the crop pipeline (``RUN/crops`` where
the decision chose whole images, else ``RUN/model``), the decided model (``RUN/model``), and the stage-1
classifier on whole images (``RUN/teacher``, the control). One ``result.json`` per (distribution, seed,
margin); the script resumes where it stopped.

    python -m elope.research.experiments.crop_dev --out runs/crop-dev --dists small,centred,lookalikes,cluttered
    python -m elope.research.experiments.crop_dev --out runs/crop-dev --report
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from elope.config import load_config
from elope.data.synthetic import write_synthetic
from elope.engine.train import run_training
from elope.research.suite import SUITE_RECIPE
from elope.tasks.evaluate import evaluate_run

DEV_SEED = 300
DEV = {"dataset.val_fraction": 0.1, "train.crop_decision": "holdout"}


def _data(out: Path, dist: str) -> Path:
    folder = out / dist / "data"
    if not (folder / "elope_synthetic.json").is_file():
        sizes = {k: v for k, v in SUITE_RECIPE["dataset.synthetic"].items() if k != "seed"}
        write_synthetic(folder, **sizes, seed=DEV_SEED, difficulty=dist, overwrite=folder.exists())
    return folder


def _config(root: Path, seed: int, margin: float, stages: list[str]):
    overrides = {**SUITE_RECIPE, **DEV, "dataset.root": str(root.resolve()), "train.seed": seed}
    overrides.update({"model.box_margin": margin, "train.stages": stages})
    return load_config("synthetic", overrides=overrides)


def _one(out: Path, dist: str, seed: int, margin: float) -> dict:
    folder = out / dist / f"seed{seed}"
    result_file = folder / f"margin{margin:g}" / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    root = _data(out, dist)
    base = folder / "base"
    if not (base / "checkpoints" / "localizer.pt").is_file():
        cfg = _config(root, seed, 0.0, ["classifier", "localizer"])
        run_training(cfg, base, resume=(base / "config.yaml").is_file())
    run = folder / f"margin{margin:g}"
    if not (run / "config.yaml").is_file():
        shutil.copytree(base, run)
    cfg = _config(root, seed, margin, ["classifier", "localizer", "crop", "weighted"])
    run_training(cfg, run, resume=True, allow=("model.box_margin",))
    crops = run / "crops" if (run / "crops").is_dir() else run / "model"
    scores = {
        name: evaluate_run(path, progress=False)
        for name, path in (("crops", crops), ("decided", run / "model"), ("control", run / "teacher"))
    }
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    result = {
        "dist": dist,
        "seed": seed,
        "margin": margin,
        "top1": {name: m["top1"] for name, m in scores.items()},
        "module_iou50": scores["crops"].get("loc_iou50"),
        "decision": next(r for r in records if r.get("event") == "crop_decision"),
        "tau": next(r for r in records if r.get("event") == "localizer_check")["tau"],
        "test_images": scores["crops"]["num_images"],
    }
    result_file.write_text(json.dumps(result, indent=1) + "\n")
    return result


def report(out: Path) -> str:
    """Per margin: the crop pipeline, the decided model and the control (test top-1 %, mean over the
    (distribution, seed) pairs), and how often the decision took the better of crops and whole images."""
    rows = [json.loads(f.read_text()) for f in sorted(out.glob("*/seed*/margin*/result.json"))]
    lines = [
        "| margin | pairs | crops % | decided % | control % | crops − control | decision right |",
        "|---|---|---|---|---|---|---|",
    ]
    for margin in sorted({r["margin"] for r in rows}):
        group = [r for r in rows if r["margin"] == margin]
        mean = {
            k: statistics.fmean(100 * r["top1"][k] for r in group) for k in ("crops", "decided", "control")
        }
        right = sum(
            (r["decision"]["choice"] == "crops") == (r["top1"]["crops"] >= r["top1"]["control"])
            for r in group
        )
        lines.append(
            f"| {margin:g} | {len(group)} | {mean['crops']:.1f} | {mean['decided']:.1f} | {mean['control']:.1f} "
            f"| {mean['crops'] - mean['control']:+.1f} | {right}/{len(group)} |"
        )
    lines += [
        "",
        "| dist | seed | margin | τ | module IoU≥0.5 % | crops % | control % | decision (val crops/whole) |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d = r["decision"]
        lines.append(
            f"| {r['dist']} | {r['seed']} | {r['margin']:g} | {r['tau']:g} | {100 * (r['module_iou50'] or 0):.1f} "
            f"| {100 * r['top1']['crops']:.1f} | {100 * r['top1']['control']:.1f} "
            f"| {d['choice']} ({100 * d['crops_top1']:.0f}/{100 * d['whole_top1']:.0f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dists", default="small,centred,lookalikes,cluttered")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--margins", default="0,0.15,0.3")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if not args.report:
        for seed in (int(s) for s in args.seeds.split(",")):
            for dist in args.dists.split(","):
                for margin in (float(m) for m in args.margins.split(",")):
                    r = _one(args.out, dist, seed, margin)
                    print(dist, seed, margin, r["top1"], r["decision"]["choice"], flush=True)
    text = report(args.out)
    (args.out / "crop_dev.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
