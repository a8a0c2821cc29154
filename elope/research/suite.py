"""``elope suite``: the method on procedural distributions nobody tuned it on (issue: generalization).

Each distribution of :data:`elope.data.synthetic_knobs.SUITE` (the critters, on which the recipe is
developed) and of :data:`elope.data.birds.BIRD_SUITE` (``birds-small``, ...: the held-out bird family,
docs/data-families.md) gets its own data set (``OUT/<dist>/data``:
12 species, 30 training and 42 test images each, so one test image is 0.2 points; frames 448 px on the
longer side; written once with data seed 0). For each distribution and seed, paired by seed:

* ``gap``: Table 5's first row (global average pooling, the 512-wide layer, cross-entropy only, whole
  images) for the classifier stage's epochs;
* ``full``: the recipe, all four stages (``OUT/<dist>/seed<k>/full``);
* ``control``: the same epochs from the same start on whole images. With ``stages.crop.init: fresh`` the
  crop stage starts from the backbone's initial weights with stage 1's budget, so the full run's own
  stage-1 classifier (``RUN/teacher``, trained on whole images) *is* that control, paired by
  construction; with ``init: continue`` a control run is trained (Table 5's control row);
* localization on the test split: the module's boxes at the run's τ and box rule, and the teacher's mean
  feature map at its own τ chosen on the training boxes with the same rule; and, for the comparisons of
  box rule, upsampling and τ, the hits of every variant on both splits (:mod:`elope.research.localization`);
* ``field``: the localization metrics of the field for both (GT-known and top-1 localization at those τ,
  MaxBoxAccV2 with its thresholds chosen on the training split: :mod:`elope.evaluation.localization_metrics`).
  A ``result.json`` written before they existed gets them from its run folder when the suite reads it.

The recipe is ``elope/configs/synthetic.yaml`` (the demo's: its localization settings are the defaults
under test) at the suite's scale (:data:`SUITE_RECIPE`), then ``--config`` / ``--set``. Nothing is chosen
on a test split: τ is chosen by the recipe on the training split (``model.tau_select``). Every finished
(distribution, seed) leaves ``result.json`` and is not trained again, so the suite resumes where it stopped.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scipy import stats

from elope import writer
from elope.config import load_config
from elope.data.birds import BIRD_SUITE, write_birds
from elope.data.synthetic import write_synthetic
from elope.data.synthetic_knobs import SUITE
from elope.engine.train import run_training
from elope.evaluation.localization_metrics import max_box_acc_v2, top1_loc_hits
from elope.nn.localization import heatmap_to_box
from elope.research.ablate import TABLE5
from elope.research.localization import (
    CachedMaps,
    best_tau,
    box_acc_curve,
    collect_maps,
    score_maps,
    variant_name,
)
from elope.runs.model_folder import model_description
from elope.tasks.evaluate import evaluate_run

__all__ = [
    "SUITE_RECIPE",
    "crop_pipeline",
    "interval_text",
    "mean_std_text",
    "paired_interval",
    "run_suite",
    "suite_table",
    "summarize_suite",
]

#: The suite's scale: 224-px classifier input (a 7x7 last map), crops cut from the 448-px original, 4
#: epochs per classifier stage at lr 0.01 (the demo's 0.03 diverged on the development sets' small critters),
#: the recipe's 20 localizer epochs. Fixed on development sets (``elope/research/experiments/suite_dev.py``: the same
#: distributions, another data seed, training splits only) before any suite run.
SUITE_RECIPE: dict[str, Any] = {
    "dataset.image_size": 224,
    "dataset.crop_source": 448,
    "dataset.synthetic": {"classes": 12, "train": 30, "test": 42, "size": 448, "seed": 0},
    **{f"stages.{s}.epochs": 4 for s in ("classifier", "crop")},
    **{f"stages.{s}.lr": 0.01 for s in ("classifier", "crop")},
    **{f"stages.{s}.lr_step": 3 for s in ("classifier", "crop")},
    "train.progress": False,
    # the shipped recipes' crop step (cub / cars / folder.yaml), fixed on the critters' development draws
    # (elope/research/experiments/crop_dev.py) before the held-out birds were run; the critter table of
    # docs/results.md predates it (margin 0, crops always)
    "model.box_margin": 0.15,
    "train.crop_decision": "holdout",
    "dataset.val_fraction": 0.1,
}
GAP = TABLE5[0]
CONTROL = TABLE5[10]
#: The summary's columns of the localization metrics of the field: ``result["field"][source][metric]``.
FIELD_COLUMNS = {
    "module_top1_loc": ("module", "top1_loc"),
    "mean_map_top1_loc": ("mean_map", "top1_loc"),
    "module_v2": ("module", "maxboxacc_v2"),
    "mean_map_v2": ("mean_map", "maxboxacc_v2"),
}


def _write_data(folder: Path, dist: str, recipe: dict[str, Any], config_file: Path | None) -> Path:
    """``OUT/<dist>/data``: the recipe's ``dataset.synthetic`` sizes and seed, the distribution's knobs;
    written once (a partial folder is replaced)."""
    if (folder / "elope_synthetic.json").is_file():
        return folder
    s = load_config("synthetic", config_file, overrides=recipe).dataset.synthetic
    sizes = {"classes": s.classes, "train": s.train, "test": s.test, "size": s.size, "seed": s.seed}
    if dist in BIRD_SUITE:  # the held-out family: the same sizes, the bird preset
        return write_birds(folder, **sizes, preset=BIRD_SUITE[dist], overwrite=folder.exists())
    return write_synthetic(folder, **sizes, difficulty=dist, overwrite=folder.exists())


def _train(folder: Path, overrides: dict[str, Any], config_file: Path | None) -> None:
    cfg = load_config("synthetic", config_file, overrides=overrides)
    run_training(cfg, folder, resume=(folder / "config.yaml").is_file())


def _localization(full: Path) -> tuple[dict[str, Any], dict[str, CachedMaps]]:
    """Module and teacher boxes of both splits for every variant (the teacher's τ chosen on the training
    split, the module's τ is the run's), and the maps of both splits."""
    out: dict[str, Any] = {}
    maps = {split: collect_maps(full, split) for split in ("trainval", "test")}
    for split, m in maps.items():
        out[split] = {
            "module": score_maps(m.module, m.boxes, m.size),
            "mean_map": score_maps(m.mean_map, m.boxes, m.size),
        }
    return out, maps


def _field(result: dict[str, Any], maps: dict[str, CachedMaps], crops: dict[str, Any]) -> dict[str, Any]:
    """The localization metrics of the field on the test split: the module's GT-known and top-1 localization
    from ``evaluate`` of the crop pipeline (``crops``: :func:`crop_pipeline`), the teacher's at its τ
    (:func:`_teacher_at_its_tau`) with its own top-1 class, and MaxBoxAccV2 of both with the thresholds
    chosen on the training split."""
    train, test = maps["trainval"], maps["test"]
    v2 = {
        name: max_box_acc_v2(
            box_acc_curve(getattr(train, name), train.boxes, train.size),
            box_acc_curve(getattr(test, name), test.boxes, test.size),
        )
        for name in ("module", "mean_map")
    }
    boxes = heatmap_to_box(
        test.mean_map, result["mean_map_tau"], test.size, upsample=result["upsample"], rule=result["box_rule"]
    )
    hits, valid = top1_loc_hits(test.mean_map_classes, test.labels, boxes, test.boxes)
    module = crops["localization"]["module"]
    return {
        "module": {
            "gt_known": module["gt_known"],
            "top1_loc": module["top1_loc"],
            "maxboxacc_v2": v2["module"],
        },
        "mean_map": {
            "gt_known": result["mean_map_iou50"],
            "top1_loc": float(hits.sum()) / max(int(valid.sum()), 1),
            "maxboxacc_v2": v2["mean_map"],
        },
    }


def _with_field(result_file: Path, echo: Any) -> dict[str, Any]:
    """A finished (distribution, seed): its ``result.json``, the ``field`` metrics added from the run folder
    (and written) where an older suite left them out and the full run is still there."""
    result = json.loads(result_file.read_text())
    full = result_file.parent / "full"
    if "field" in result or not (full / "model" / "model.json").is_file():
        return result
    echo(f"[suite] {result_file.parent}: adding the localization metrics of the field")
    crops = crop_pipeline(full)
    _, maps = _localization(crops)
    result["field"] = _field(result, maps, evaluate_run(crops, progress=False, maxboxacc=False))
    writer.write_text(result_file, json.dumps(result, indent=1) + "\n")
    return result


def _seed(
    out: Path, dist: str, seed: int, recipe: dict[str, Any], config_file: Path | None
) -> dict[str, Any]:
    """Train and evaluate the rows of one (distribution, seed); cached in ``result.json``."""
    folder = out / dist / f"seed{seed}"
    result_file = folder / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    common = {**recipe, "train.seed": seed, "dataset.root": str((out / dist / "data").resolve())}
    full, gap = folder / "full", folder / "gap"
    _train(full, common, config_file)
    _train(gap, {**common, **GAP.overrides}, config_file)
    cfg = load_config("synthetic", config_file, overrides=common)
    control = full / "teacher"
    if cfg.stages.crop.init != "fresh":
        control = folder / "control"
        _train(control, {**common, **CONTROL.overrides}, config_file)
    crops = crop_pipeline(full)
    metrics = {name: evaluate_run(path, progress=False, maxboxacc=False) for name, path in
               (("full", full), ("crops", crops), ("gap", gap), ("control", control))}  # fmt: skip
    saved = json.loads(((crops / "model") if crops == full else crops).joinpath("model.json").read_text())
    _, spec = model_description(saved)
    result = {
        "dist": dist,
        "seed": seed,
        "top1": {name: m["top1"] for name, m in metrics.items()},
        "module_iou50": metrics["crops"]["loc_iou50"],
        "tau": spec.tau,
        "box_rule": spec.box_rule,
        "upsample": spec.heatmap_upsample,
        "box_margin": spec.box_margin,
        "decision": _decision(full),
        "test_images": metrics["full"]["num_images"],
    }
    result["localization"], maps = _localization(crops)
    result["mean_map_tau"], result["mean_map_iou50"] = _teacher_at_its_tau(result)
    result["field"] = _field(result, maps, metrics["crops"])
    writer.write_text(result_file, json.dumps(result, indent=1) + "\n")
    return result


def crop_pipeline(run: Path) -> Path:
    """Where a run's crop pipeline lies: ``RUN/crops`` where the crop decision chose whole images for
    ``RUN/model`` (:mod:`elope.engine.crop_decision`), else the run itself."""
    return run / "crops" if (run / "crops" / "model.json").is_file() else run


def _decision(run: Path) -> dict[str, Any] | None:
    """The run's ``crop_decision`` record (None: the run did not decide, ``train.crop_decision: always``)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return next((r for r in map(json.loads, lines) if r.get("event") == "crop_decision"), None)


def _teacher_at_its_tau(result: dict[str, Any]) -> tuple[float, float]:
    """The teacher's mean map on the test split at the τ its training boxes choose (the run's box rule)."""
    variant = variant_name(result["box_rule"], result["upsample"])
    tau = best_tau(result["localization"]["trainval"]["mean_map"][variant])
    return tau, result["localization"]["test"]["mean_map"][variant][str(tau)]


def run_suite(
    out: Path,
    dists: Sequence[str],
    seeds: Sequence[int],
    *,
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    train: bool = True,
    echo: Any = print,
) -> list[dict[str, Any]]:
    """Run (or, with ``train=False``, only collect) every (distribution, seed); write ``OUT/suite.json``
    and ``OUT/suite.md``; return the summary rows."""
    unknown = [d for d in dists if d not in SUITE and d not in BIRD_SUITE]
    if unknown:
        raise ValueError(
            f"unknown suite distribution(s) {unknown}; choose from {', '.join(SUITE)} "
            f"(critters) or {', '.join(BIRD_SUITE)} (birds, held out)"
        )
    recipe = {**SUITE_RECIPE, **(overrides or {})}
    results: dict[str, list[dict[str, Any]]] = {}
    for dist in dists:
        if train:
            _write_data(out / dist / "data", dist, recipe, config_file)
        for seed in seeds if train else ():
            echo(f"[suite] {dist}, seed {seed}")
            r = _seed(out, dist, seed, recipe, config_file)
            echo(
                f"[suite] {dist}, seed {seed}: "
                + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["top1"].items())
            )
        files = sorted((out / dist).glob("seed*/result.json"))
        results[dist] = [_with_field(f, echo) for f in files]
    summary = summarize_suite(results)
    writer.write_text(out / "suite.json", json.dumps({"summary": summary, "runs": results}, indent=1) + "\n")
    writer.write_text(out / "suite.md", suite_table(summary))
    return summary


def paired_interval(diffs: Sequence[float]) -> tuple[float, float, float] | None:
    """Mean of paired differences and its 95 % t-interval; None for fewer than two pairs."""
    if len(diffs) < 2:
        return None
    mean = statistics.fmean(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize_suite(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per distribution: mean ± std (%) of each column over seeds and the paired differences; with two
    or more distributions a last row ``all`` pools every (distribution, seed) pair. Its interval describes
    this suite's distributions, not every dataset one might meet."""
    rows = [_summary_row(dist, runs) for dist, runs in results.items() if runs]
    if len(rows) > 1:
        rows.append(_summary_row("all", [r for runs in results.values() for r in runs]))
    return rows


def _summary_row(dist: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of :func:`summarize_suite` over ``runs`` (each run pairs its own GAP, full and control)."""
    pct = {
        key: [100 * r["top1"].get(key, r["top1"]["full"]) for r in runs]
        for key in ("gap", "full", "control", "crops")
    }
    pct["module"] = [100 * r["module_iou50"] for r in runs]
    pct["mean_map"] = [100 * r["mean_map_iou50"] for r in runs]
    row: dict[str, Any] = {"dist": dist, "seeds": [r["seed"] for r in runs]}
    row.update({key: _mean_std(v) for key, v in pct.items()})
    for a, b in (("full", "gap"), ("full", "control"), ("crops", "control"), ("module", "mean_map")):
        row[f"{a}-{b}"] = paired_interval([x - y for x, y in zip(pct[a], pct[b])])
    field = {col: [_field_value(r, *where) for r in runs] for col, where in FIELD_COLUMNS.items()}
    complete = {col: v for col, v in field.items() if None not in v}  # a run without them: a dash
    row.update({col: _mean_std(v) if col in complete else None for col, v in field.items()})
    both = "module_v2" in complete and "mean_map_v2" in complete
    diffs = [x - y for x, y in zip(field["module_v2"], field["mean_map_v2"])] if both else []
    row["module_v2-mean_map_v2"] = paired_interval(diffs)
    row["tau"] = [r["tau"] for r in runs]
    row["whole"] = sum((r.get("decision") or {}).get("choice") == "whole" for r in runs)
    return row


def _field_value(result: dict[str, Any], source: str, metric: str) -> float | None:
    """One metric of ``result["field"]`` in %, None where the run has none."""
    value = ((result.get("field") or {}).get(source) or {}).get(metric)
    value = value.get("value") if isinstance(value, dict) else value
    return None if value is None else 100 * value


def _cell(value: tuple[float, ...] | None) -> str:
    if value is None:
        return "—"
    if len(value) == 2:
        return f"{value[0]:.1f} ± {value[1]:.1f}"
    return f"{value[0]:+.1f} [{value[1]:+.1f}, {value[2]:+.1f}]"


def mean_std_text(values: Sequence[float]) -> str:
    """``mean ± std`` of ``values`` as the suite's tables print it (std 0 for one value)."""
    return _cell(_mean_std(list(values)))


def interval_text(diffs: Sequence[float]) -> str:
    """The mean of paired differences and its 95 % t-interval, ``+m [+lo, +hi]``; a dash below two pairs."""
    return _cell(paired_interval(diffs))


def suite_table(summary: list[dict[str, Any]]) -> str:
    """The suite as Markdown: one row per distribution (MaxBoxAccV2: each IoU level's heatmap threshold
    chosen on the training split, the test split read at it)."""
    lines = [
        "| distribution | seeds | GAP % | full % | control % | full − GAP | full − control | crops − control "
        "| whole chosen | module IoU≥0.5 % | teacher map % | module − map | module top-1 loc % "
        "| teacher top-1 loc % | module MaxBoxAccV2 % | teacher MaxBoxAccV2 % | V2 module − map | τ per seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        cells = [r["dist"], str(len(r["seeds"]))]
        cells += [
            _cell(r[k]) for k in ("gap", "full", "control", "full-gap", "full-control", "crops-control")
        ]
        cells.append(f"{r['whole']}/{len(r['seeds'])}")
        cells += [_cell(r[k]) for k in ("module", "mean_map", "module-mean_map")]
        cells += [_cell(r[k]) for k in (*FIELD_COLUMNS, "module_v2-mean_map_v2")]
        cells.append("—" if r["dist"] == "all" else ", ".join(f"{t:g}" for t in r["tau"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
