"""``elope demo``: the whole method on the procedural data set, on a CPU, in minutes.

Trains the four stages of ``elope/configs/synthetic.yaml`` (ResNet-18 from scratch, small images: not the
paper's setting), evaluates the result on the test split with ``elope evaluate``'s pipeline, prints the
results table (softmax and nearest-class-mean top-1, localization accuracy) with the validation top-1
after each stage, and draws a few predictions (heatmap and box) with ``elope predict``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch


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


@click.command("demo")
@click.option("--out", default=Path("runs/demo"), show_default=True, type=click.Path(path_type=Path))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs of every stage (default: the recipe's).")
@click.option("--pictures", default=6, show_default=True, type=click.IntRange(min=0))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
def demo_command(
    out: Path, device: str, epochs: int | None, pictures: int, overrides: tuple[str, ...]
) -> None:
    """Train, evaluate and draw predictions on the procedural set (a few minutes on 2 CPU cores).

    Running it again in the same --out continues (or reuses) the run there.
    """
    from elope.data import build_dataset
    from elope.evaluate import evaluate_run, format_report
    from elope.predict import predict_paths
    from elope.train import resolve_config, run_training, user_errors

    resume = (out / "config.yaml").is_file()
    with user_errors():
        pairs = [("train.device", device), *overrides]
        cfg = resolve_config(out, "synthetic", overrides=pairs, epochs=epochs, resume=resume)
        run_training(cfg, out, resume=resume)
    dev = (
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    result = evaluate_run(out, split="test", device=dev, progress=False)

    click.echo("\nValidation top-1 of the epoch each stage kept:")
    for stage, epoch, top1 in stage_summary(out):
        click.echo(f"  {stage:<10} epoch {epoch:>3}   {100 * top1:6.2f} %")
    click.echo("\nTest split (elope evaluate):")
    click.echo(format_report(result))

    if pictures:
        test = build_dataset("synthetic", result["root"], "test")
        vis = out / "predictions"
        preds = predict_paths(out, pick_images(test, pictures), top=3, save_vis=vis, device=dev)
        right = sum(p["classes"][0]["class"] == Path(p["path"]).parent.name for p in preds)
        click.echo(f"\n{len(preds)} prediction pictures ({right} correct) in {vis}/")
