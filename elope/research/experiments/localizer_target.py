"""Raw vs per-image standardised heatmap target for the localization module, paired by seed.

Reuses the stage-1 classifiers of ``recipe_pairs.py`` (``OUT/seedN/base/checkpoints/classifier.pt``): for
each seed the localization stage is trained again from that same classifier with
``loss.localizer_target=raw`` (the paper's smooth L1 on the raw mean map) and with ``standardized`` (ours),
and the module's boxes are scored on the test split (Table 4, IoU >= 0.5), together with the contrast of
its heatmaps (mean per-image standard deviation of the min-max normalised map: 0 for a flat map).

    python -m elope.research.experiments.localizer_target --out runs/pairs --seeds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import torch
import yaml

from elope.config import load_config
from elope.engine.train import run_training
from elope.tasks.evaluate import evaluate_run, load_run


def contrast(run_dir: Path) -> float:
    """Mean per-image std of the module's min-max normalised heatmaps on the test split."""
    run = load_run(run_dir)
    ds, _, _ = run.load_dataset("test")
    values = []
    with torch.inference_mode():
        for i in range(0, len(ds), 32):
            x = torch.stack([ds[j][0] for j in range(i, min(i + 32, len(ds)))])
            h = run.model.localizer(x).flatten(1)
            h = (h - h.amin(1, keepdim=True)) / (h.amax(1, keepdim=True) - h.amin(1, keepdim=True)).clamp_min(
                1e-9
            )
            values += h.std(1).tolist()
    return statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, dict]] = {}
    for seed in range(args.seeds):
        base = args.out / f"seed{seed}" / "base"
        saved = yaml.safe_load((base / "config.yaml").read_text())
        for kind in ("raw", "standardized"):
            folder = args.out / f"seed{seed}" / f"target-{kind}"
            if not (folder / "result.json").is_file():
                if folder.exists():
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                shutil.copy(base / "config.yaml", folder / "config.yaml")
                (folder / "checkpoints").mkdir()
                shutil.copy(base / "checkpoints" / "classifier.pt", folder / "checkpoints" / "last.pt")
                shutil.copy(base / "metrics.jsonl", folder / "metrics.jsonl")
                shutil.copytree(base / "teacher", folder / "teacher")
                overrides = {"loss.localizer_target": kind, "train.stages": ["localizer"]}
                cfg = load_config("synthetic", overrides=overrides, base=saved)
                run_training(cfg, folder, resume=True, allow=("loss.localizer_target",))
                metrics = evaluate_run(folder, progress=False, mean_map=True)
                metrics["contrast"] = contrast(folder)
                (folder / "result.json").write_text(json.dumps(metrics, indent=2) + "\n")
            results.setdefault(kind, {})[str(seed)] = json.loads((folder / "result.json").read_text())
    (args.out / "localizer_target.json").write_text(json.dumps(results, indent=2) + "\n")
    for kind, runs in results.items():
        loc = [100 * r["loc_iou50"] for r in runs.values()]
        con = [r["contrast"] for r in runs.values()]
        mm = [100 * r["mean_map_iou50"] for r in runs.values()]
        sd = statistics.stdev(loc) if len(loc) > 1 else 0.0
        print(
            f"| {kind} | {statistics.fmean(loc):.1f} ± {sd:.1f} | {statistics.fmean(con):.3f} | "
            f"{statistics.fmean(mm):.1f} |"
        )


if __name__ == "__main__":
    main()
