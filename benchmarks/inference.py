"""Inference latency: the one-pass ELoPE pipeline against the plain torchvision backbone (issue 5).

ELoPE side: ``ELoPE(backbone, C).predict(images)``, i.e. localization module on the 64×64 copy →
heatmap → box → ``roi_align`` crop resized to ``image_size`` → backbone → GKMP → embedding → classifier →
softmax/top-1. Baseline: ``torchvision.models.<backbone>(num_classes=C)`` forward on the same images. Both in
eval mode under ``torch.inference_mode``, random weights (latency does not depend on them: the crop is
always resized to ``image_size``).

The pieces of the overhead (localize = resize + stem + 3×3 head + box; crop = ``crop_and_resize``; head =
GKMP + embedding + classifier + softmax/top-1 on the crop's features; resize = the antialiased 448→64 resize
alone) are timed in the same interleaved loop and reported as shares of the baseline. Their sum plus one,
the *ratio by parts*, estimates the same ratio from milliseconds-long calls: on a shared VM the two ~0.3 s
forwards drift by several percent between repeats, the small pieces much less (``docs/results.md``). The MACs ratio from :func:`elope.tasks.profile.count_macs` (the paper's Table 3: 1.654e10 / 1.648e10 =
1.004) is printed for reference.

    python -m benchmarks.inference                      # resnet50, 448 px, batch 1 and 8, 2 threads
    python -m benchmarks.inference --batch-sizes 1 --repeats 30 --json out.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    benchmark_main,
    environment,
    format_ms,
    interleaved,
    measuring,
)
from elope.nn.backbones import TORCHVISION_BACKBONES
from elope.nn.crop import crop_and_resize
from elope.nn.model import ELoPE
from elope.spec import ModelSpec
from elope.tasks.profile import count_macs

TARGET = 1.03  # issue 5: measured latency ratio ELoPE / backbone


def auto_repeats(batch_size: int) -> int:
    """Default repetitions: many for small batches, fewer for large ones (keeps a run near 3 minutes)."""
    return max(4, min(15, round(40 / batch_size)))


def build_models(
    backbone: str, num_classes: int, image_size: int, box_rule: str = "peak", upsample: bool = True
) -> tuple[ELoPE, nn.Module]:
    """ELoPE with its localization module (the recipes' box step by default: the peak rule on the
    upsampled heatmap), and the plain torchvision network, both in eval mode."""
    if backbone not in TORCHVISION_BACKBONES:
        raise SystemExit(f"--backbone must be one of {sorted(TORCHVISION_BACKBONES)}, got {backbone!r}")
    torch.manual_seed(0)
    model = ELoPE(
        backbone,
        num_classes,
        spec=ModelSpec(image_size=image_size, box_rule=box_rule, heatmap_upsample=upsample),
    ).eval()
    baseline = TORCHVISION_BACKBONES[backbone](num_classes=num_classes).eval()
    return model, baseline


def head(model: ELoPE, features: torch.Tensor) -> torch.Tensor:
    """What ``predict`` adds after the backbone and a plain network does not: GKMP (Eq. 3), the embedding
    layer, the classifier, softmax and top-1 (the baseline's average pooling and fc are in its time)."""
    pooled = model.pool(features)
    logits = model.classifier(model.embedding(pooled) if model.embedding is not None else pooled)
    return logits.float().softmax(dim=1).topk(1, dim=1).indices


def macs_ratio(model: ELoPE, baseline: nn.Module, image_size: int) -> dict[str, float]:
    """MACs of ``model.predict`` and of the baseline on one image, and their ratio."""
    images = torch.zeros(1, 3, image_size, image_size)
    elope_macs = count_macs(model.predict, images)
    base_macs = count_macs(baseline, images)
    return {"baseline_macs": base_macs, "elope_macs": elope_macs, "ratio": elope_macs / base_macs}


def bench_batch(
    model: ELoPE,
    baseline: nn.Module,
    batch_size: int,
    image_size: int,
    repeats: int,
    warmup: int,
    breakdown: bool,
) -> dict[str, Any]:
    """Interleaved timing of baseline forward, ELoPE predict (and its overhead pieces) at one batch size."""
    torch.manual_seed(batch_size)
    images = torch.randn(batch_size, 3, image_size, image_size)
    localizer_size = model.localizer.input_size if model.localizer is not None else 64
    with torch.inference_mode():
        boxes, _ = model.localize(images)
        features = model.forward_features(crop_and_resize(images, boxes, image_size))
        contenders = {"baseline": lambda: baseline(images), "elope": lambda: model.predict(images)}
        if breakdown:
            contenders |= {
                "localize": lambda: model.localize(images),
                "crop": lambda: crop_and_resize(images, boxes, image_size),
                "head": lambda: head(model, features),
                "resize": lambda: F.interpolate(
                    images, size=(localizer_size,) * 2, mode="bilinear", align_corners=False, antialias=True
                ),
            }
        timings = interleaved(contenders, repeats=repeats, warmup=warmup)
    result: dict[str, Any] = {
        "batch_size": batch_size,
        "repeats": repeats,
        "median_ms": {name: timings.median(name) * 1e3 for name in timings},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio": timings.ratio("elope", "baseline"),
    }
    if breakdown:
        result["share_of_baseline"] = share = {
            name: timings.ratio(name, "baseline")["median_paired_ratio"]
            for name in ("localize", "crop", "head", "resize")
        }
        # the backbone runs on a crop of the baseline's input size: ELoPE = baseline + these three
        result["ratio_by_parts"] = 1.0 + share["localize"] + share["crop"] + share["head"]
    result["meets_target"] = result["ratio"]["median_paired_ratio"] <= TARGET
    return result


def run(
    backbone: str = "resnet50",
    batch_sizes: Sequence[int] = (1, 8),
    image_size: int = 448,
    repeats: int | None = None,
    warmup: int = 1,
    threads: int | None = 2,
    flush_denormal: bool = True,
    num_classes: int = 200,
    breakdown: bool = True,
    macs: bool = True,
    box_rule: str = "peak",
    upsample: bool = True,
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict (``batches``: one entry per batch size)."""
    with measuring(threads, flush_denormal):
        model, baseline = build_models(backbone, num_classes, image_size, box_rule, upsample)
        result: dict[str, Any] = {
            "benchmark": "inference",
            "backbone": backbone,
            "image_size": image_size,
            "box_rule": box_rule,
            "heatmap_upsample": upsample,
            "num_classes": num_classes,
            "target_ratio": TARGET,
            "flush_denormal": flush_denormal,
            "environment": environment(),
        }
        if macs:
            result["macs"] = macs_ratio(model, baseline, image_size)
        result["batches"] = [
            bench_batch(
                model, baseline, b, image_size, repeats or auto_repeats(b), warmup, breakdown=breakdown
            )
            for b in batch_sizes
        ]
    return result


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    env = result["environment"]
    lines = [
        f"inference: ELoPE.predict vs torchvision {result['backbone']} forward, {result['image_size']} px, "
        f"{result['num_classes']} classes, eval + inference_mode, box rule {result.get('box_rule', 'all')}"
        f"{' on the upsampled heatmap' if result.get('heatmap_upsample') else ''}",
        f"machine: {env['cpu']}, nproc {env['nproc']}, torch threads {env['torch_threads']}, "
        f"torch {env['torch']}"
        f", load average {env.get('loadavg_1min', float('nan')):.1f}",
    ]
    if "macs" in result:
        m = result["macs"]
        lines.append(
            f"MACs (batch 1): baseline {m['baseline_macs']:.4e}, ELoPE {m['elope_macs']:.4e}, "
            f"ratio {m['ratio']:.4f} (paper Table 3: 1.004)"
        )
    for entry in result["batches"]:
        ms, ratio = entry["median_ms"], entry["ratio"]
        lines.append(
            f"batch {entry['batch_size']:>3} ({entry['repeats']} interleaved repeats, medians): "
            f"baseline {format_ms(ms['baseline'] / 1e3)}, ELoPE {format_ms(ms['elope'] / 1e3)}, "
            f"ratio {ratio['median_paired_ratio']:.3f} paired / {ratio['ratio_of_medians']:.3f} of medians "
            f"(target <= {result['target_ratio']}: {'met' if entry['meets_target'] else 'NOT met'})"
        )
        if "share_of_baseline" in entry:
            share = entry["share_of_baseline"]
            lines.append(
                "    overhead pieces, % of baseline: "
                + ", ".join(f"{name} {100 * share[name]:.2f}% ({ms[name]:.2f} ms)" for name in share)
            )
            lines.append(
                f"    ratio by parts (1 + localize + crop + head, each paired with the baseline; steadier than "
                f"the whole-pipeline ratio on a shared machine): {entry['ratio_by_parts']:.3f}"
            )
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="resnet50", choices=sorted(TORCHVISION_BACKBONES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per batch size (default: 15 at batch 1, 5 at 8)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per contender first")
    parser.add_argument("--no-breakdown", action="store_true", help="time only the two pipelines")
    parser.add_argument("--no-macs", action="store_true", help="skip the MACs count")
    parser.add_argument("--box-rule", default="peak", choices=["all", "peak"], help="default: the recipes'")
    parser.add_argument(
        "--no-upsample", action="store_true", help="threshold the 14x14 cells (the paper) instead"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report)


if __name__ == "__main__":
    main()
