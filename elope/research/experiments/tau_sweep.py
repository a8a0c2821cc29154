"""Table 4 against the box threshold τ: the localization module and the teacher's mean map, per seed.

Reuses the stage-1 + 2 run folders of ``recipe_pairs.py`` (``OUT/seedN/base``: the localization module and,
in ``teacher/``, the stage-1 classifier whose mean feature map it learned). For every τ both boxes are
scored (IoU ≥ 0.5, Sec. 5) on the **training** split, where τ is chosen, and on the test split, which is
only reported. Each method gets its own τ (the best on the training split, mean over seeds), so the mean
map is not judged at the module's threshold.

    python -m elope.research.experiments.tau_sweep --out runs/pairs --seeds 3 --taus 0.4,0.5,0.6,0.7,0.8
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy import stats

from elope.tasks.evaluate import evaluate_run


def sweep(folder: Path, taus: list[float], split: str) -> dict[str, dict[str, float]]:
    """``{tau: {"module": hits, "mean_map": hits}}`` on ``split`` (fractions in [0, 1])."""
    out = {}
    for tau in taus:
        m = evaluate_run(folder, split=split, tau=tau, mean_map=True, progress=False)
        out[str(tau)] = {"module": m["loc_iou50"], "mean_map": m["mean_map_iou50"]}
    return out


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--taus", default="0.4,0.5,0.6,0.7,0.8")
    args = parser.parse_args()
    taus = [float(t) for t in args.taus.split(",")]
    path = args.out / "tau_sweep.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for seed in range(args.seeds):
        for split in ("train", "test"):
            key = f"seed{seed}/{split}"
            if key not in results:
                results[key] = sweep(args.out / f"seed{seed}" / "base", taus, split)
                path.write_text(json.dumps(results, indent=2) + "\n")
    seeds = range(args.seeds)
    print("| τ | module, train | mean map, train | module, test | mean map, test |")
    print("|---|---|---|---|---|")
    for tau in map(str, taus):
        cells = [
            _mean_std([results[f"seed{s}/{split}"][tau][kind] for s in seeds])
            for split in ("train", "test")
            for kind in ("module", "mean_map")
        ]
        print(f"| {tau} | " + " | ".join(cells) + " |")
    chosen = {}
    for kind in ("module", "mean_map"):
        best = max(
            map(str, taus),
            key=lambda t: statistics.fmean(results[f"seed{s}/train"][t][kind] for s in seeds),
        )
        chosen[kind] = [results[f"seed{s}/test"][best][kind] for s in seeds]
        print(f"{kind}: τ {best} chosen on the training split -> test {_mean_std(chosen[kind])} %")
    diffs = [100 * (a - b) for a, b in zip(chosen["module"], chosen["mean_map"])]
    if len(diffs) > 1:
        half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
        mean = statistics.fmean(diffs)
        print(
            f"module - mean map, paired by seed: {mean:+.1f} points, 95 % CI [{mean - half:+.1f}, {mean + half:+.1f}]"
            f" (per seed: {', '.join(f'{d:+.1f}' for d in diffs)})"
        )


if __name__ == "__main__":
    main()
