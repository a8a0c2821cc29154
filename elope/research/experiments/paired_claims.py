"""The paper's component claims as paired differences over seeds, from a finished ``elope ablate`` folder.

Rows with the same seed share everything the recipe draws before they differ (same data, same order, same
stage 1 where their stage 1 is the same), so each claim is tested on per-seed differences: mean, standard
deviation and a 95 % t-interval (docs/results.md, "Table 5 rows from ImageNet features").

    python -m elope.research.experiments.paired_claims runs/ablation-pretrained
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from scipy import stats

from elope.research.ablate import TABLE5

# (claim, row with the component, row without it); rows as numbered in Table 5 (1-based)
CLAIMS = (
    ("GKMP vs GAP", 3, 1),
    ("L_w + L_b vs no embedding loss", 8, 3),
    ("localization vs the control (same epochs, whole images)", 9, 11),
    ("weighted vs plain k-max pooling", 10, 9),
    ("full method vs GAP", 10, 1),
)


def results(folder: Path, row: int) -> dict[int, dict]:
    slug = TABLE5[row - 1].slug
    found = {}
    for path in sorted((folder / slug).glob("seed*/result.json")):
        r = json.loads(path.read_text())
        found[int(r["seed"])] = r
    return found


def main() -> None:
    folder = Path(sys.argv[1])
    print("| claim | rows | seeds | Δ top-1 (points), mean ± std | 95 % CI | holds? |")
    print("|---|---|---|---|---|---|")
    for claim, with_row, without_row in CLAIMS:
        a, b = results(folder, with_row), results(folder, without_row)
        seeds = sorted(set(a) & set(b))
        diff = [100 * (a[s]["top1"] - b[s]["top1"]) for s in seeds]
        if len(diff) < 2:
            print(f"| {claim} | {with_row} − {without_row} | {len(diff)} | — | — | not measured |")
            continue
        m, sd = statistics.fmean(diff), statistics.stdev(diff)
        h = stats.t.ppf(0.975, len(diff) - 1) * sd / len(diff) ** 0.5
        verdict = "yes" if m - h > 0 else ("no (lower)" if m + h < 0 else "not resolved")
        print(
            f"| {claim} | {with_row} − {without_row} | {len(diff)} | {m:+.1f} ± {sd:.1f} | "
            f"[{m - h:+.1f}, {m + h:+.1f}] | {verdict} |"
        )


if __name__ == "__main__":
    main()
