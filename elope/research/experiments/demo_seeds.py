"""The demo's recipe over several seeds: what one run of ``elope demo`` should be compared with.

One ``elope demo`` is a single seed on 144 test images, and its numbers move from machine to machine (CPU
kernels sum in another order; see ``environment`` in a run's ``metrics.jsonl``). This script trains the demo
recipe (``elope/configs/synthetic.yaml``) for seeds 0..N-1 as two rows of ``elope ablate`` (the GAP
baseline and the full method, paired by seed), and writes their means, standard deviations and the paired
95 % intervals to ``elope/tasks/demo_reference.json``, which ``elope demo`` prints beside its own run.

    python -m elope.research.experiments.demo_seeds --out runs/demo-seeds --seeds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from elope.research.ablate import TABLE5, run_ablation
from elope.research.suite import paired_interval
from elope.runs.environment import environment

REFERENCE = Path(__file__).resolve().parents[2] / "tasks" / "demo_reference.json"
ROWS = {"gap": TABLE5[0], "full": TABLE5[9]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    run_ablation(args.out, list(ROWS.values()), range(args.seeds), name="demo_seeds", title="Demo recipe")
    runs = {
        key: {
            json.loads(p.read_text())["seed"]: json.loads(p.read_text())
            for p in (args.out / row.slug).glob("seed*/result.json")
        }
        for key, row in ROWS.items()
    }
    seeds = sorted(set(runs["gap"]) & set(runs["full"]))
    pct = {
        "gap": [100 * runs["gap"][s]["top1"] for s in seeds],
        "full": [100 * runs["full"][s]["top1"] for s in seeds],
        "module": [100 * runs["full"][s]["loc_iou50"] for s in seeds],
        "mean_map": [100 * runs["full"][s]["mean_map_iou50"] for s in seeds],
    }
    reference = {
        "seeds": seeds,
        "test_images": runs["full"][seeds[0]]["num_images"],
        **{k: {"mean": statistics.fmean(v), "std": statistics.stdev(v), "runs": v} for k, v in pct.items()},
        "full_minus_gap": paired_interval([a - b for a, b in zip(pct["full"], pct["gap"])]),
        "module_minus_mean_map": paired_interval([a - b for a, b in zip(pct["module"], pct["mean_map"])]),
        "machine": environment("cpu"),
    }
    REFERENCE.write_text(json.dumps(reference, indent=1) + "\n")
    print(json.dumps({k: v for k, v in reference.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
