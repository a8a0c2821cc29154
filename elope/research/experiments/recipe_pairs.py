"""Paired crop-stage variants on one shared stage 1 + 2 per seed (docs/results.md, "Recipe readings").

For each seed the classifier and the localization module are trained once (the demo recipe,
``elope/configs/synthetic.yaml``, ImageNet EfficientNet-Lite0); the run folder is then copied and the crop
stage trained in each copy with one reading changed, so every difference between variants is paired by
seed and shares everything up to the crop stage:

* ``source-2x``: the recipe: crops cut from the crop source (2 x image_size), the classifier started afresh
  (``stages.crop.init: fresh``, the authors' release);
* ``source-1x``: crops cut from the classifier-size image, upsampled (the old crop path,
  ``dataset.crop_source = image_size``);
* ``continue``: the crop stage continues from the stage-1 classifier (``stages.crop.init: continue``);
* ``whole`` (the control): the stage-1 classifier itself, i.e. the same epochs from the same start on whole
  images (for ``init: fresh`` the crop stage's budget and start match stage 1's exactly).

Every variant is evaluated on the test split with ``elope evaluate``; the teacher's mean-map boxes are
measured once per seed. Writes ``OUT/pairs.json`` and prints a Markdown table with mean ± std over seeds
and, for each variant against ``source-2x``, the mean paired difference with a 95 % t-interval.

    python -m elope.research.experiments.recipe_pairs --out runs/pairs --seeds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from scipy import stats

from elope.config import load_config
from elope.engine.train import run_training
from elope.tasks.evaluate import evaluate_run

VARIANTS = {
    "source-2x": {},
    "source-1x": {"dataset.crop_source": "IMAGE_SIZE"},
    "continue": {"stages.crop.init": "continue"},
}


def _train(
    folder: Path, overrides: dict, stages: list[str], base: dict | None = None, allow: tuple[str, ...] = ()
) -> None:
    """``allow``: recipe keys of stages not started yet that may differ from the copied run's (recorded in
    its metrics.jsonl; elope.runs.resume)."""
    cfg = load_config("synthetic", overrides={**overrides, "train.stages": stages}, base=base)
    run_training(cfg, folder, resume=(folder / "checkpoints" / "last.pt").is_file(), allow=allow)


def run_seed(out: Path, seed: int, common: dict) -> dict[str, dict]:
    base_dir = out / f"seed{seed}" / "base"
    overrides = {**common, "train.seed": seed}
    _train(base_dir, overrides, ["classifier", "localizer"])
    results = {"whole": evaluate_run(base_dir / "teacher", progress=False)}
    results["whole"]["mean_map_iou50"] = evaluate_run(base_dir, progress=False, mean_map=True)[
        "mean_map_iou50"
    ]
    import yaml

    saved = yaml.safe_load((base_dir / "config.yaml").read_text())
    for name, change in VARIANTS.items():
        folder = out / f"seed{seed}" / name
        if not (folder / "result.json").is_file():
            if not folder.exists():
                shutil.copytree(base_dir, folder)
            change = {
                k: saved["dataset"]["image_size"] if v == "IMAGE_SIZE" else v for k, v in change.items()
            }
            _train(folder, {**overrides, **change}, ["crop"], base=saved, allow=tuple(change))
            metrics = evaluate_run(folder, progress=False)
            (folder / "result.json").write_text(json.dumps(metrics, indent=2) + "\n")
        results[name] = json.loads((folder / "result.json").read_text())
    return results


def table(all_results: dict[int, dict[str, dict]]) -> str:
    seeds = sorted(all_results)
    names = ["whole", *VARIANTS]
    lines = [
        f"| variant ({len(seeds)} seeds) | top-1 % mean ± std | module IoU≥0.5 % | vs source-2x: paired Δ top-1, 95 % CI |",
        "|---|---|---|---|",
    ]
    for name in names:
        top = [100 * all_results[s][name]["top1"] for s in seeds]
        loc = [all_results[s][name].get("loc_iou50") for s in seeds]
        ref = [100 * all_results[s]["source-2x"]["top1"] for s in seeds]
        diff = [a - b for a, b in zip(top, ref)]
        sd = statistics.stdev(top) if len(top) > 1 else 0.0
        ci = "—"
        if name != "source-2x" and len(diff) > 1:
            m, s = statistics.fmean(diff), statistics.stdev(diff)
            h = stats.t.ppf(0.975, len(diff) - 1) * s / len(diff) ** 0.5
            ci = f"{m:+.1f} [{m - h:+.1f}, {m + h:+.1f}]"
        loc_s = "—" if None in loc else f"{100 * statistics.fmean(loc):.1f}"
        lines.append(f"| {name} | {statistics.fmean(top):.1f} ± {sd:.1f} | {loc_s} | {ci} |")
    mm = [all_results[s]["whole"]["mean_map_iou50"] for s in seeds]
    lines.append(f"\nTeacher mean-map IoU≥0.5: {100 * statistics.fmean(mm):.1f} % (mean over seeds).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    from elope.config import parse_override

    common = dict(parse_override(o) for o in args.overrides)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    common.setdefault("dataset.root", str(data.resolve()))
    if not data.exists():
        from elope.data.synthetic import write_synthetic

        write_synthetic(data, **load_config("synthetic").dataset.synthetic.model_dump())
    results = {seed: run_seed(out, seed, common) for seed in range(args.seeds)}
    (out / "pairs.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
