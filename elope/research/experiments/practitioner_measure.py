"""The measurements of ``docs/results-practitioner.md`` (issue 18, parts 3-4), from the runs of
``practitioner_runs.py`` (trained first when missing).

For every run (condition × seed) ``elope evaluate --tta flip`` on the balanced test split gives the
single-view and the flip-averaged accuracies in one pass; its JSON is kept as
``docs/experiments/cpu/practitioner/longtail-<condition>-seed<seed>.json``. The summary
(``summary.json`` there, and the tables printed) pairs by seed:

* (a) long-tailed data: mean per-class accuracy (also over the rare and the common species alone) of each
  condition, mean ± std over seeds, and ``balanced - plain``, ``inverse - plain``, ``sqrt_inverse - plain``: the mean of the paired
  differences and its 95 % t-interval;
* (b) test-time augmentation: flip-averaged minus single-view top-1 and mean per-class accuracy, paired by
  run, for each condition.

    OMP_NUM_THREADS=1 python -m elope.research.experiments.practitioner_measure --out runs/practitioner
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from elope.research.experiments.practitioner_runs import CONDITIONS, RAW, SEEDS, SYNTHETIC, train
from elope.research.suite import paired_interval
from elope.tasks.evaluate import evaluate_run

#: the species with 4 training images (the even ones, 0-based odd labels); the others have 40
RARE = [c for c, n in enumerate(SYNTHETIC["train"]) if n == min(SYNTHETIC["train"])]


def measure(out: Path, condition: str, seed: int) -> dict[str, Any]:
    """The evaluation (with ``tta="flip"``) of one run, written to :data:`RAW` once and read back after."""
    path = RAW / f"longtail-{condition}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = evaluate_run(train(out, condition, seed), split="test", progress=False, tta="flip")
    result["root"] = result["run"] = "(local)"  # the machine's paths say nothing
    RAW.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _group_mean(per_class: dict[str, float | None], classes: list[int]) -> float:
    values = list(per_class.values())
    return 100 * statistics.fmean(values[c] for c in classes)  # type: ignore[misc]


def accuracies(result: dict[str, Any], view: str) -> dict[str, float]:
    """Percentages of one evaluation: ``view`` ``single`` (the pipeline) or ``flip`` (``result["tta"]``)."""
    r = result if view == "single" else result["tta"]
    common = [c for c in range(len(r["per_class"])) if c not in RARE]
    return {
        "top1": 100 * r["top1"],
        "ncm_top1": 100 * r["ncm_top1"],
        "mean_per_class": 100 * r["mean_per_class"],
        "rare": _group_mean(r["per_class"], RARE),
        "common": _group_mean(r["per_class"], common),
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _paired(a: list[float], b: list[float]) -> dict[str, Any] | None:
    interval = paired_interval([x - y for x, y in zip(a, b)])
    return None if interval is None else {"mean": interval[0], "low": interval[1], "high": interval[2]}


def summarize(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """(a) the conditions paired with ``plain``; (b) flip minus single view per condition."""
    seeds = sorted(set.intersection(*(set(r) for r in results.values())))  # complete pairs only
    metrics = ("top1", "mean_per_class", "rare", "common", "ncm_top1")
    single = {c: [accuracies(results[c][s], "single") for s in seeds] for c in results}
    flip = {c: [accuracies(results[c][s], "flip") for s in seeds] for c in results}
    longtail = {c: {m: _stats([a[m] for a in single[c]]) for m in metrics} for c in results}
    for c in results:
        if c != "plain":
            longtail[c]["minus_plain"] = {
                m: _paired([a[m] for a in single[c]], [a[m] for a in single["plain"]]) for m in metrics
            }
    tta = {
        c: {
            m: {
                "single": _stats([a[m] for a in single[c]]),
                "flip": _stats([a[m] for a in flip[c]]),
                "flip_minus_single": _paired([a[m] for a in flip[c]], [a[m] for a in single[c]]),
            }
            for m in ("top1", "mean_per_class")
        }
        for c in results
    }
    runs = [(c, i) for c in results for i in range(len(seeds))]  # every run: flip minus single, pooled
    tta["all runs"] = {
        m: {
            "single": _stats([single[c][i][m] for c, i in runs]),
            "flip": _stats([flip[c][i][m] for c, i in runs]),
            "flip_minus_single": _paired(
                [flip[c][i][m] for c, i in runs], [single[c][i][m] for c, i in runs]
            ),
            "positive": sum(flip[c][i][m] > single[c][i][m] for c, i in runs),
            "negative": sum(flip[c][i][m] < single[c][i][m] for c, i in runs),
        }
        for m in ("top1", "mean_per_class")
    }
    return {"seeds": seeds, "rare_classes": RARE, "longtail": longtail, "tta": tta}


def _ms(s: dict[str, float]) -> str:
    return f"{s['mean']:.1f} ± {s['std']:.1f}"


def _diff(d: dict[str, Any] | None) -> str:
    return "n/a" if d is None else f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def tables(summary: dict[str, Any]) -> str:
    """The two markdown tables of ``docs/results-practitioner.md``."""
    lines = [
        "| condition | mean per-class acc. | rare species | common species | NCM top-1 | "
        "Δ mean per-class vs plain [95 % CI] | Δ rare vs plain [95 % CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, row in summary["longtail"].items():
        d = row.get("minus_plain", {})
        lines.append(
            f"| {c} | {_ms(row['mean_per_class'])} | {_ms(row['rare'])} | {_ms(row['common'])} | "
            f"{_ms(row['ncm_top1'])} | {_diff(d.get('mean_per_class')) if d else '—'} | "
            f"{_diff(d.get('rare')) if d else '—'} |"
        )
    lines += [
        "",
        "| runs | top-1 single | top-1 flip | Δ top-1 [95 % CI] | mean per-class single | "
        "mean per-class flip | Δ mean per-class [95 % CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, row in summary["tta"].items():
        t, m = row["top1"], row["mean_per_class"]
        lines.append(
            f"| {c} | {_ms(t['single'])} | {_ms(t['flip'])} | {_diff(t['flip_minus_single'])} | "
            f"{_ms(m['single'])} | {_ms(m['flip'])} | {_diff(m['flip_minus_single'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the runs' folder (practitioner_runs.py)")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    args = parser.parse_args()
    results = {c: {s: measure(args.out, c, s) for s in args.seeds} for c in CONDITIONS}
    summary = summarize(results)
    (RAW / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(tables(summary), end="")


if __name__ == "__main__":
    main()
