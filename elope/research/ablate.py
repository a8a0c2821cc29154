"""``elope ablate``: the paper's ablation (Table 5) and K sweep (Fig. 7) as one command.

Every row is a complete ``elope train`` run (its own run folder, resumable) followed by ``elope evaluate`` on
the test split; rows differ only by the config keys listed in :data:`TABLE5` / :func:`k_sweep_rows`, so all
rows share one budget: the same recipe, epochs per stage, data and seeds. A finished row-seed leaves
``result.json`` in its folder and is not trained again, so an interrupted ablation continues where it
stopped, and seeds can be added later (``--seeds``, ``--seed-offset``).

Rows with the localization module run the ``localizer`` and ``crop`` stages after ``classifier`` (and the
last row ``weighted`` too), as in the paper, so they train for more epochs in total than the rows above
them; the table prints the epochs of every row.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elope import writer
from elope.failures import Echo, to_stderr

__all__ = ["TABLE5", "AblationRow", "k_sweep_rows", "run_ablation", "summarize"]

CLASSIFIER_ONLY = ["classifier"]
WITH_LOCALIZATION = ["classifier", "localizer", "crop"]
CONTROL = ["classifier", "crop"]


@dataclass(frozen=True)
class AblationRow:
    """One row: a name, the paper's CUB accuracy (Table 5, ResNet-50) and the config keys it sets."""

    name: str
    paper: float | None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


def _row(
    name: str, paper: float | None, pooling: str, loss: str, stages: list[str], **extra: Any
) -> AblationRow:
    return AblationRow(
        name,
        paper,
        {
            "model.pooling": pooling,
            "loss.variant": loss,
            "model.localizer": "localizer" in stages,
            "train.stages": stages,
            **{key.replace("__", "."): value for key, value in extra.items()},
        },
    )


# Wen et al.'s center loss acts on raw (unnormalised) features, so the paper's λ = 2, chosen for the
# normalised L_w + L_b, makes it diverge (NaN at step 9 of the procedural recipe, CPU and GPU alike). The
# paper does not give the λ it used for this row; we use Wen et al.'s own, 0.003 (ECCV 2016, Sec. 4).
CENTER_LOSS_LAMBDA = 0.003


# Table 5 of the paper. The GAP and GMP baselines keep the 512-d layer before the classifier (Sec. 6.3).
TABLE5: tuple[AblationRow, ...] = (
    _row("GAP", 81.2, "gap", "none", CLASSIFIER_ONLY),
    _row("GMP", 82.2, "gmp", "none", CLASSIFIER_ONLY),
    _row("GKMP", 82.7, "gkmp", "none", CLASSIFIER_ONLY),
    _row("GKMP + localization", 84.2, "gkmp", "none", WITH_LOCALIZATION),
    _row("GKMP + center loss", 84.1, "gkmp", "center", CLASSIFIER_ONLY, loss__lambda=CENTER_LOSS_LAMBDA),
    _row("GKMP + DFF", 84.6, "gkmp", "dff", CLASSIFIER_ONLY),
    _row("GKMP + L_w", 84.4, "gkmp", "within", CLASSIFIER_ONLY),
    _row("GKMP + L_w + L_b", 84.9, "gkmp", "full", CLASSIFIER_ONLY),
    _row("GKMP + L_w + L_b + localization", 86.9, "gkmp", "full", WITH_LOCALIZATION),
    _row(
        "GKMP + L_w + L_b + localization + weighted", 87.4, "gkmp", "full", [*WITH_LOCALIZATION, "weighted"]
    ),
    # Not in the paper: the localization rows train the classifier for the crop stage's epochs on top of
    # the others. This control trains the same crop-stage epochs on the whole image (no localization
    # module), so "+ localization" minus this row is what the crops themselves add.
    _row("GKMP + L_w + L_b + crop-stage epochs on whole images (control)", None, "gkmp", "full", CONTROL),
)


def k_sweep_rows(ks: Sequence[int]) -> tuple[AblationRow, ...]:
    """Fig. 7: GKMP with the full embedding loss, no localization, for each K (K = H·W is GAP)."""
    return tuple(
        AblationRow(
            f"K={k}", None, {**_row("", 0.0, "gkmp", "full", CLASSIFIER_ONLY).overrides, "model.k": k}
        )
        for k in ks
    )


def feature_map_positions(backbone: str, image_size: int) -> int:
    """H·W of the backbone's last feature map at ``image_size`` (the largest K of Fig. 7)."""
    import torch

    from elope.nn.backbones import build_backbone

    with torch.no_grad():
        fmap = build_backbone(backbone).features.eval()(torch.zeros(1, 3, image_size, image_size))
    return fmap.shape[2] * fmap.shape[3]


def _train_and_evaluate(
    row: AblationRow,
    seed: int,
    run_dir: Path,
    dataset: str,
    root: Path,
    common: dict[str, Any],
    epochs: int | None,
    config_file: Path | None = None,
) -> dict[str, Any]:
    from elope.config import load_config
    from elope.engine.train import run_training
    from elope.tasks.evaluate import evaluate_run

    result_file = run_dir / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    overrides = {**common, **row.overrides, "train.seed": seed, "dataset.root": str(root)}
    cfg = load_config(dataset, config_file, overrides=overrides, epochs=epochs)
    run_training(cfg, run_dir, resume=(run_dir / "config.yaml").is_file())  # a started row continues
    # Table 4: the teacher's map; the row keeps no MaxBoxAccV2, so no pass over the training split for it
    metrics = evaluate_run(run_dir, split="test", progress=False, mean_map=True, maxboxacc=False)
    epochs_total = sum(getattr(cfg.stages, stage).epochs for stage in cfg.train.stages)
    result = {
        "row": row.name,
        "seed": seed,
        "epochs": epochs_total,
        **{
            key: metrics.get(key) for key in ("top1", "ncm_top1", "loc_iou50", "mean_map_iou50", "num_images")
        },
    }
    writer.write_text(result_file, json.dumps(result, indent=2) + "\n")
    return result


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(rows: Sequence[AblationRow], results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds of every row's metrics (in %)."""
    summary = []
    for row in rows:
        runs = results.get(row.name, [])
        entry: dict[str, Any] = {"row": row.name, "paper_top1": row.paper, "seeds": [r["seed"] for r in runs]}
        entry["epochs"] = runs[0]["epochs"] if runs else None
        for key in ("top1", "ncm_top1", "loc_iou50", "mean_map_iou50"):
            values = [100.0 * r[key] for r in runs if r.get(key) is not None]
            entry[key], entry[f"{key}_std"] = _mean_std(values)
        summary.append(entry)
    return summary


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def format_markdown(summary: list[dict[str, Any]], title: str) -> str:
    lines = [
        f"## {title}",
        "",
        "| row | top-1 % (mean ± std) | nearest-mean top-1 % | localization IoU≥0.5 % | seeds | epochs "
        "| paper (CUB, ResNet-50) % |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        paper = "—" if e["paper_top1"] is None else f"{e['paper_top1']:.1f}"
        lines.append(
            f"| {e['row']} | {_fmt(e['top1'], e['top1_std'])} | {_fmt(e['ncm_top1'], e['ncm_top1_std'])} "
            f"| {_fmt(e['loc_iou50'], e['loc_iou50_std'])} | {len(e['seeds'])} | {e['epochs'] if e['epochs'] is not None else '—'} | {paper} |"
        )
    return "\n".join(lines) + "\n"


def plot_k_sweep(
    summary: list[dict[str, Any]], ks: Sequence[int], path: Path, positions: int | None = None
) -> Path:
    """Accuracy against K, like Fig. 7 of the paper: mean ± std over seeds, the seed count at each point.

    ``positions`` (H·W of the last feature map) marks K = H·W, where GKMP is GAP.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        (k, e["top1"], e["top1_std"] or 0.0, len(e["seeds"]))
        for k, e in zip(ks, summary)
        if e["top1"] is not None
    ]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if points:
        xs, ys, errs, counts = zip(*points)
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3)
        for x, y, n in zip(xs, ys, counts):
            ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [f"{x}\n(GAP)" if x == positions else str(x) for x in xs])
    ax.set_xlabel("K (global k-max pooling)")
    ax.set_ylabel("test top-1 accuracy [%]")
    suffix = f", H·W = {positions}" if positions else ""
    ax.set_title(f"K sweep (cf. Fig. 7){suffix}; mean ± std over n seeds", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with writer.write_with(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def run_ablation(
    out: Path,
    rows: Sequence[AblationRow],
    seeds: Sequence[int],
    *,
    dataset: str = "synthetic",
    root: Path | None = None,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
    name: str = "ablation",
    title: str = "Ablation (Table 5)",
    config_file: Path | None = None,
    train: bool = True,
    echo: Echo = to_stderr,
) -> list[dict[str, Any]]:
    """Train and evaluate every row for every seed in ``out``; write ``<name>.md`` and ``<name>.json``;
    ``echo`` hears which row and seed runs.

    With ``train=False`` nothing is trained: the table is written from the row-seeds already finished in
    ``out`` (from earlier invocations, other processes or other machines).

    ``config_file`` (a YAML file with any subset of the recipe's keys) and ``overrides`` apply to every row;
    each row's own keys (:data:`TABLE5`) come last.
    """
    from elope.config import load_config

    writer.make_folder(out)
    if not train:
        seeds = []
    common = dict(overrides or {})
    common.setdefault("train.progress", False)
    if root is None and seeds:
        if dataset != "synthetic":
            raise ValueError(f"--root is required for --dataset {dataset}")
        from elope.data.synthetic import write_synthetic

        root = out / "data"
        if not (root / "elope_synthetic.json").exists():
            synthetic = load_config("synthetic", config_file, overrides=common).dataset.synthetic
            write_synthetic(root, **synthetic.model_dump())
    results: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for seed in seeds:
            echo(f"[{name}] {row.name}, seed {seed}")
            result = _train_and_evaluate(
                row, seed, out / row.slug / f"seed{seed}", dataset, root, common, epochs, config_file
            )
            echo(f"[{name}] {row.name}, seed {seed}: test top-1 {100 * result['top1']:.1f}%")
    # the table holds every finished seed in the folder, also those of earlier invocations
    for row in rows:
        files = sorted((out / row.slug).glob("seed*/result.json"))
        results[row.name] = [json.loads(f.read_text()) for f in files]
    summary = summarize(rows, results)
    writer.write_text(out / f"{name}.json", json.dumps(summary, indent=2) + "\n")
    writer.write_text(out / f"{name}.md", format_markdown(summary, title))
    return summary
