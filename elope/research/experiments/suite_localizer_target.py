"""The localizer's target on the generalization suite: the paper's raw mean heatmap against the per-image
standardised one (the recipe), paired by seed, from the same stage 1.

For every finished (distribution, seed) of ``elope suite --out SUITE``, the full run's stage-1 checkpoint is
copied into ``SUITE/<dist>/seed<k>/raw-target`` and stage 2 trained there with ``loss.localizer_target=raw``
(everything else the recipe's, τ chosen on the training boxes as the recipe does). Both modules' boxes are
then scored on the test split with the recipe's box rule and upsampling, each at the τ its own training
boxes choose (what ``model.tau_select=auto`` would use). Writes ``SUITE/localizer_target.json`` and prints the
table: per distribution, mean ± std of IoU ≥ 0.5 for each target and the paired difference with its 95 %
t-interval. Each pair is also kept in ``raw-target/pair.json``, so two processes can share the work
(``--keys``) and the merged file is rebuilt from what both finished.

    python -m elope.research.experiments.suite_localizer_target --suite runs/suite [--keys small/seed0,medium/seed0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import yaml

from elope.config import load_config
from elope.engine.train import run_training
from elope.research.localization import best_tau, collect_maps, score_maps, variant_name
from elope.research.suite import interval_text, mean_std_text


def _stage1_copy(full: Path, folder: Path) -> None:
    """``folder`` as the full run was at the end of stage 1 (config, data line and stage-1 records)."""
    folder.mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    shutil.copy(full / "checkpoints" / "classifier.pt", folder / "checkpoints" / "last.pt")
    shutil.copy(full / "config.yaml", folder / "config.yaml")
    shutil.copytree(full / "teacher", folder / "teacher")
    shutil.copy(full / "metrics.jsonl", folder / "metrics.jsonl")  # resume cuts it back to the checkpoint


def raw_target_run(full: Path) -> Path:
    """Train stage 2 with the raw target from the full run's stage 1 (resumable)."""
    folder = full.parent / "raw-target"
    if (folder / "checkpoints" / "localizer.pt").is_file():
        return folder
    if not folder.exists():
        _stage1_copy(full, folder)
    saved = yaml.safe_load((full / "config.yaml").read_text())
    overrides = {"loss.localizer_target": "raw", "train.stages": ["classifier", "localizer"]}
    cfg = load_config(base=saved, overrides=overrides)
    run_training(cfg, folder, resume=True, allow=("loss.localizer_target",))
    return folder


def module_hits(run: Path, variant: str) -> float:
    """The module's IoU ≥ 0.5 on the test split at the τ its training split chooses."""
    train = score_maps(*_module(run, "trainval"))[variant]
    test = score_maps(*_module(run, "test"))[variant]
    return test[str(best_tau(train))]


def _module(run: Path, split: str) -> tuple:
    maps = collect_maps(run, split)
    return maps.module, maps.boxes, maps.size


def merged(suite: Path) -> dict:
    """Every finished pair: the merged file's and each ``raw-target/pair.json``; rewritten atomically when a
    pair is new to it (only printing the table writes nothing, so a read-only snapshot can be tabulated)."""
    path = suite / "localizer_target.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    results = dict(known)
    for pair in sorted(suite.glob("*/seed*/raw-target/pair.json")):
        results[f"{pair.parent.parent.parent.name}/{pair.parent.parent.name}"] = json.loads(pair.read_text())
    results = dict(sorted(results.items()))
    if results == known:
        return results
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(results, indent=1) + "\n")
    partial.replace(path)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, required=True)
    parser.add_argument("--keys", default="", help="only these dist/seedK, comma-separated, in this order")
    args = parser.parse_args()
    results = merged(args.suite)
    files = sorted(args.suite.glob("*/seed*/result.json"))
    if args.keys:
        files = [args.suite / key / "result.json" for key in args.keys.split(",")]
    for result_file in files:
        key = f"{result_file.parent.parent.name}/{result_file.parent.name}"
        if key in results or not result_file.is_file():
            continue
        suite = json.loads(result_file.read_text())
        variant = variant_name(suite["box_rule"], suite["upsample"])
        raw = raw_target_run(result_file.parent / "full")
        pair = {
            "standardized": module_hits(result_file.parent / "full", variant),
            "raw": module_hits(raw, variant),
        }
        (raw / "pair.json").write_text(json.dumps(pair) + "\n")
        results = merged(args.suite)
        print(key, pair, flush=True)
    print("| distribution | seeds | standardised % | raw % | standardised − raw, 95 % CI |")
    print("|---|---|---|---|---|")
    groups = {
        dist: [v for k, v in results.items() if k.split("/")[0] == dist]
        for dist in sorted({k.split("/")[0] for k in results})
    }
    groups["all"] = list(results.values())
    for dist, pairs in groups.items():
        std = [100 * p["standardized"] for p in pairs]
        raw = [100 * p["raw"] for p in pairs]
        diff = interval_text([a - b for a, b in zip(std, raw)])
        print(f"| {dist} | {len(pairs)} | {mean_std_text(std)} | {mean_std_text(raw)} | {diff} |")


if __name__ == "__main__":
    main()
