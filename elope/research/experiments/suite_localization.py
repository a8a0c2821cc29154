"""The localization choices on the generalization suite, paired by seed, from ``elope suite``'s results.

Every ``SUITE/<dist>/seed<k>/result.json`` holds the share of boxes with IoU ≥ 0.5 of the full run's module
and of its teacher's mean map for every τ of the grid, both box rules and with and without heatmap
upsampling, on the training and the test split (``elope.research.localization``), and the τ that the labels
criterion would choose. Nothing here trains; every choice is made on the training split and scored on the
test split:

* **box step**: each variant (rule × upsampling) at the τ its own training boxes choose; the recipe
  (``peak/up``) against the paper's (``all/cells``) and against ``all/up`` (the rule alone);
* **τ**: the recipe's variant at fixed τ (0.2 and 0.3: Table 2; 0.6: the earlier demo recipe) against τ
  chosen on the training boxes (``auto``) and τ chosen by class labels only (``labels``);
* the module against its teacher's mean map (each at its own τ, the recipe's variant).

    python -m elope.research.experiments.suite_localization --suite runs/suite > docs/experiments/cpu/suite/localization.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from elope.research.localization import best_tau
from elope.research.suite import interval_text, mean_std_text

VARIANTS = ("all/cells", "all/up", "peak/cells", "peak/up")
FIXED = ("0.2", "0.3", "0.6")


def _at_own_tau(result: dict, kind: str, variant: str) -> float:
    """Test IoU ≥ 0.5 (%) of ``kind`` (module / mean_map) at the τ its training boxes choose."""
    loc = result["localization"]
    tau = best_tau(loc["trainval"][kind][variant])
    return 100 * loc["test"][kind][variant][str(tau)]


def measures(result: dict) -> dict[str, float]:
    """Every number the tables compare, for one (distribution, seed)."""
    test = result["localization"]["test"]["module"]["peak/up"]
    row = {f"module {v}": _at_own_tau(result, "module", v) for v in VARIANTS}
    row["mean map peak/up"] = _at_own_tau(result, "mean_map", "peak/up")
    row.update({f"tau {t}": 100 * test[t] for t in FIXED})
    row["tau boxes"] = row["module peak/up"]
    row["boxes tau"] = best_tau(result["localization"]["trainval"]["module"]["peak/up"])
    labels = result["localization"].get("labels_tau")  # the suite scores it on some seeds only
    if labels is not None:
        row["tau labels"] = 100 * test[str(labels["tau"])]
        row["labels tau"] = labels["tau"]
    return row


def _diff(a: list[float], b: list[float]) -> str:
    return interval_text([x - y for x, y in zip(a, b)])


def table(rows: dict[str, list[dict[str, float]]], columns: list[str], pairs: list[tuple[str, str]]) -> str:
    head = ["distribution", "seeds", *columns, *(f"{a} − {b}" for a, b in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    everything: dict[str, list[float]] = defaultdict(list)
    for dist, runs in rows.items():
        cols = {c: [r[c] for r in runs] for c in {*columns, *(x for p in pairs for x in p)}}
        for c, v in cols.items():
            everything[c] += v
        cells = [dist, str(len(runs)), *(mean_std_text(cols[c]) for c in columns)]
        cells += [_diff(cols[a], cols[b]) for a, b in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    n = len(everything[columns[0]])
    cells = ["all (dist × seed)", str(n), *(mean_std_text(everything[c]) for c in columns)]
    cells += [_diff(everything[a], everything[b]) for a, b in pairs]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, required=True)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    for path in sorted(args.suite.glob("*/seed*/result.json")):
        result = json.loads(path.read_text())
        rows[result["dist"]].append(measures(result))
    print("### Box step: each variant at the τ its training boxes choose (test IoU ≥ 0.5, %)\n")
    print(table(rows, [f"module {v}" for v in VARIANTS],
                [("module peak/up", "module all/cells"), ("module peak/up", "module all/up"),
                 ("module all/up", "module all/cells")]))  # fmt: skip
    print("\n### τ fixed or chosen on the training boxes (module, peak/up; test IoU ≥ 0.5, %)\n")
    print(table(rows, [f"tau {t}" for t in FIXED] + ["tau boxes"],
                [("tau boxes", "tau 0.3"), ("tau boxes", "tau 0.6")]))  # fmt: skip
    labelled = {d: [r for r in runs if "labels tau" in r] for d, runs in rows.items()}
    labelled = {d: runs for d, runs in labelled.items() if runs}
    print(
        "\n### τ by class labels only (no boxes) against τ by the training boxes, where the suite scored it\n"
    )
    print(table(labelled, ["tau boxes", "tau labels"], [("tau labels", "tau boxes")]))
    gaps = [abs(r["labels tau"] - r["boxes tau"]) for runs in labelled.values() for r in runs]
    same = sum(g < 1e-9 for g in gaps)
    near = sum(g <= 0.1 + 1e-9 for g in gaps)
    print(f"\nτ by labels vs τ by boxes: the same τ in {same} of {len(gaps)} runs, within 0.1 in {near}; ")
    print("per run (boxes → labels): " + ", ".join(
        f"{d} {r['boxes tau']:g}→{r['labels tau']:g}" for d, runs in labelled.items() for r in runs))  # fmt: skip
    print("\n### The module against its teacher's mean map (each at its own τ, peak/up; test IoU ≥ 0.5, %)\n")
    print(table(rows, ["module peak/up", "mean map peak/up"], [("module peak/up", "mean map peak/up")]))


if __name__ == "__main__":
    main()
