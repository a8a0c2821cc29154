"""10,000 classes (issue 29 item 3): the head's training step and evaluation against C = 200.

**Training step of the head** (what grows with C; the backbone's cost does not depend on C), on pooled
features of ResNet-50's width (2048), embedding 512, batch 32 drawn as 8 classes × 4 images (a balanced
batch)::

    emb = EmbeddingHead(2048, 512)(features); logits = Linear(512, C)(emb)
    loss = CE(logits, y) + 2.0 · ClassMeanLoss(emb, y)            # λ = 2.0 (Table 2), Eq. (1)
    zero_grad; backward; SGD step (momentum 0.9, weight decay 1e-3)

at C = 200, 1,000, 10,000, interleaved; ``allrows``: the same step at the largest C with the former
class-mean loss, which updated and differentiated all C means every step (the shipped loss touches only
the batch's classes, bit-identical; ``tests/test_nn_losses_scale.py``). Time ratios against C = 200, and
against one ResNet-50 training step at the same batch (measured at ``--backbone-batch`` images and scaled
linearly to the batch; ``--backbone-batch 0`` skips it).

**Peak memory**: each configuration runs in a fresh process (``--probe``) whose peak resident set size
(``VmHWM``) is read after a few steps; reported beside that of a process that only built the
inputs, so the difference is what the configuration adds.

**Evaluation** at the largest C, streamed: synthetic embeddings (near their class mean plus noise),
``--eval-batch`` at a time, through the classifier (top-1) and nearest class mean, into
``elope.evaluation.metrics.EvalAccumulator`` (top-1, mean per class, NCM, confused pairs; the noise puts
top-1 near 0.54, so about 46,000 errors reach the confused-pair table). Nothing of size
N is held; its peak memory at N = 10,000 and N = ``--eval-images`` (100,000) shows it flat in N. Holding
the logits instead would take N × C × 4 bytes (4 GB at 100,000 × 10,000).

    python -m benchmarks.classes --json classes.json
    python -m benchmarks.classes --classes 200 1000 --eval-images 2000 --repeats 3   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import benchmark_main, environment, interleaved, measuring
from elope.evaluation.metrics import EvalAccumulator, nearest_class_mean
from elope.nn.embedding import EmbeddingHead
from elope.nn.losses import ClassMeanLoss, between_class_loss, update_class_means, within_class_loss

LAMBDA = 2.0  # Table 2
FEATURES = 2048  # ResNet-50's pooled width
NOISE = 0.25  # per-dimension noise of the synthetic evaluation embeddings: top-1 about 0.54 at C = 10,000


class AllRowsLoss(ClassMeanLoss):
    """The former class-mean loss: μ^t of all C classes built and differentiated every step (the same
    values as :class:`ClassMeanLoss`; kept here to measure what touching only the batch's classes saves)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        f = F.normalize(embeddings.float(), dim=1)
        new = update_class_means(f, labels, self.means, self.alpha)
        loss = within_class_loss(f, labels, new)
        loss = loss + between_class_loss(new, labels, self.gamma, self.margin, squared=True)
        with torch.no_grad():
            self.means.copy_(new.detach())
        return loss


def balanced_labels(num_classes: int, batch: int, per_class: int, seed: int) -> Tensor:
    """``batch`` labels: ``batch // per_class`` distinct classes drawn from C, ``per_class`` images each."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randperm(num_classes, generator=g)[: max(1, batch // per_class)]
    return classes.repeat_interleave(per_class)[:batch]


def head_step(num_classes: int, dim: int, batch: int, all_rows: bool = False) -> Callable[[], None]:
    """One SGD step of embedding head + classifier + CE + λ·class-mean loss on fixed pooled features."""
    torch.manual_seed(0)
    head = nn.Sequential(EmbeddingHead(FEATURES, dim), nn.Linear(dim, num_classes)).train()
    criterion = (AllRowsLoss if all_rows else ClassMeanLoss)(num_classes, dim).train()
    optimizer = torch.optim.SGD(head.parameters(), lr=3e-3, momentum=0.9, weight_decay=1e-3)
    features = torch.randn(batch, FEATURES)
    labels = balanced_labels(num_classes, batch, 4, seed=1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        emb = head[0](features)
        loss = F.cross_entropy(head[1](emb), labels) + LAMBDA * criterion(emb, labels)
        loss.backward()
        optimizer.step()

    return step


def backbone_step(batch: int, image_size: int) -> Callable[[], None]:
    """One SGD step of a torchvision ResNet-50 (1,000-way head) at ``batch`` images."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet50().train()
    optimizer = torch.optim.SGD(net.parameters(), lr=3e-3, momentum=0.9, weight_decay=1e-3)
    images, labels = torch.randn(batch, 3, image_size, image_size), torch.randint(0, 1000, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()

    return step


def streamed_evaluation(num_classes: int, dim: int, images: int, batch: int) -> dict[str, Any]:
    """Evaluate ``images`` synthetic embeddings batch by batch into an :class:`EvalAccumulator`."""
    torch.manual_seed(2)
    means = F.normalize(torch.randn(num_classes, dim), dim=1)
    classifier = nn.Linear(dim, num_classes)
    with torch.no_grad():
        classifier.weight.copy_(means * 8.0)
        classifier.bias.zero_()
    acc = EvalAccumulator(num_classes, with_ncm=True, with_boxes=False)
    g = torch.Generator().manual_seed(3)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, images, batch):
            labels = torch.randint(0, num_classes, (min(batch, images - first),), generator=g)
            emb = means[labels] + NOISE * torch.randn(labels.shape[0], dim, generator=g)
            acc.update(labels, classifier(emb).argmax(dim=1), nearest_class_mean(emb, means))
        result = acc.result([str(c) for c in range(num_classes)])
    seconds = time.perf_counter() - start
    keep = ("top1", "ncm_top1", "mean_per_class", "num_images")
    return {**{k: result[k] for k in keep}, "seconds": seconds, "images_per_s": images / seconds}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: ``VmHWM`` of ``/proc/self/status`` (Linux), which a
    fresh ``exec`` starts again (``ru_maxrss`` does not: it keeps the forking parent's size), else
    ``ru_maxrss``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe(spec: str) -> dict[str, Any]:
    """``--probe``: run one configuration in this (fresh) process and return its peak RSS.

    ``none``: the inputs only; ``train:C:DIM:BATCH[:allrows]``: 5 head steps; ``eval:C:DIM:N:BATCH``."""
    kind, *args = spec.split(":")
    out: dict[str, Any] = {"probe": spec}
    if kind == "train":
        step = head_step(int(args[0]), int(args[1]), int(args[2]), all_rows=args[3:] == ["allrows"])
        for _ in range(5):
            step()
    elif kind == "eval":
        out["evaluation"] = streamed_evaluation(int(args[0]), int(args[1]), int(args[2]), int(args[3]))
    elif kind != "none":
        raise SystemExit(f"--probe: unknown configuration {spec!r}")
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_probe(spec: str, threads: int | None, fixed_mmap: bool = False) -> dict[str, Any]:
    """:func:`probe` in a fresh interpreter (``python -m benchmarks.classes --probe SPEC``); ``fixed_mmap``:
    with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MB (every large block mapped and unmapped on its
    own), which takes out the heap's fragmentation from the peak."""
    command = [sys.executable, "-m", "benchmarks.classes", "--probe", spec, "--threads", str(threads or 0)]
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": str(1 << 20)} if fixed_mmap else {})}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_heads(classes: Sequence[int], dim: int, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Interleaved step times of the head at each C (and ``allrows`` at the largest), ratios to the first."""
    contenders = {f"C={c}": head_step(c, dim, batch) for c in classes}
    contenders[f"C={classes[-1]} allrows"] = head_step(classes[-1], dim, batch, all_rows=True)
    timings = interleaved(contenders, repeats=repeats, warmup=warmup, inner=3)
    base = f"C={classes[0]}"
    return {
        "median_ms": {name: timings.median(name) * 1e3 for name in timings},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio_vs_first": {name: timings.ratio(name, base)["median_paired_ratio"] for name in timings},
        "allrows_vs_shipped": timings.ratio(f"C={classes[-1]} allrows", f"C={classes[-1]}")[
            "median_paired_ratio"
        ],
    }


def time_backbone(batch: int, backbone_batch: int, image_size: int, repeats: int) -> dict[str, Any] | None:
    """One ResNet-50 step at ``backbone_batch`` images, scaled linearly to ``batch`` (None: skipped)."""
    if backbone_batch < 1:
        return None
    timings = interleaved({"resnet50": backbone_step(backbone_batch, image_size)}, repeats=repeats, warmup=1)
    seconds = timings.median("resnet50")
    return {
        "measured_batch": backbone_batch,
        "image_size": image_size,
        "measured_ms": seconds * 1e3,
        "estimated_ms_at_batch": seconds * 1e3 * batch / backbone_batch,
    }


def measure_memory(
    classes: Sequence[int],
    dim: int,
    batch: int,
    eval_sizes: Sequence[int],
    eval_batch: int,
    threads: int | None,
) -> dict[str, Any]:
    """Peak RSS of each configuration in its own process, and what it adds to the inputs-only process."""
    base = run_probe("none", threads)["peak_rss_mb"]
    specs = {f"train C={c}": f"train:{c}:{dim}:{batch}" for c in classes}
    specs[f"train C={classes[-1]} allrows"] = f"train:{classes[-1]}:{dim}:{batch}:allrows"
    specs.update(
        {f"eval C={classes[-1]} N={n}": f"eval:{classes[-1]}:{dim}:{n}:{eval_batch}" for n in eval_sizes}
    )
    probes = {name: run_probe(spec, threads) for name, spec in specs.items()}
    for n in eval_sizes:
        spec = f"eval:{classes[-1]}:{dim}:{n}:{eval_batch}"
        probes[f"eval C={classes[-1]} N={n} mmap 1MB"] = run_probe(spec, threads, fixed_mmap=True)
    out: dict[str, Any] = {"baseline_peak_rss_mb": base, "peak_rss_mb": {}, "added_mb": {}}
    for name, result in probes.items():
        out["peak_rss_mb"][name] = result["peak_rss_mb"]
        out["added_mb"][name] = result["peak_rss_mb"] - base
        if "evaluation" in result:
            out.setdefault("evaluation", {})[name] = result["evaluation"]
    first = out["added_mb"][f"train C={classes[0]}"]
    out["added_ratio_vs_first"] = {
        name: added / first
        for name, added in out["added_mb"].items()
        if name.startswith("train") and first > 0
    }
    out["held_logits_gb_at_largest_n"] = max(eval_sizes) * classes[-1] * 4 / 1e9
    return out


def run(
    classes: Sequence[int] = (200, 1000, 10_000),
    dim: int = 512,
    batch: int = 32,
    repeats: int = 10,
    warmup: int = 2,
    backbone_batch: int = 2,
    image_size: int = 224,
    eval_images: int = 100_000,
    eval_batch: int = 256,
    probe: str | None = None,
    memory: bool = True,
    threads: int | None = 2,
    flush_denormal: bool = True,
) -> dict[str, Any]:
    """The whole benchmark (or, with ``probe``, one configuration of :func:`probe`)."""
    with measuring(threads, flush_denormal):
        if probe is not None:
            return probe_result(probe)
        result: dict[str, Any] = {
            "benchmark": "classes",
            "settings": {
                "classes": list(classes), "dim": dim, "batch": batch, "classes_per_batch": batch // 4,
                "features": FEATURES, "repeats": repeats, "backbone_batch": backbone_batch,
                "image_size": image_size, "eval_images": eval_images, "eval_batch": eval_batch,
            },
            "environment": environment(),
            "step": time_heads(classes, dim, batch, repeats, warmup),
            "backbone": time_backbone(batch, backbone_batch, image_size, max(2, repeats // 4)),
        }  # fmt: skip
        if result["backbone"] is not None:
            estimate = result["backbone"]["estimated_ms_at_batch"]
            result["step"]["share_of_resnet50_step"] = {
                name: ms / estimate for name, ms in result["step"]["median_ms"].items()
            }
        sizes = sorted({min(10_000, eval_images), eval_images})
        if memory:
            result["memory"] = measure_memory(classes, dim, batch, sizes, eval_batch, threads)
        else:  # no fresh processes: the evaluation timed here, no memory figures
            largest = classes[-1]
            result["memory"] = {
                "added_mb": {},
                "held_logits_gb_at_largest_n": eval_images * largest * 4 / 1e9,
            }
            evaluation = streamed_evaluation(largest, dim, eval_images, eval_batch)
            result["memory"]["evaluation"] = {f"eval C={largest} N={eval_images}": evaluation}
    return result


def probe_result(spec: str) -> dict[str, Any]:
    """:func:`probe`, marked so that :func:`report` prints it as one JSON line."""
    return {"probe_result": probe(spec)}


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result (one JSON line for a probe)."""
    if "probe_result" in result:
        return json.dumps(result["probe_result"])
    env, s, step, mem = result["environment"], result["settings"], result["step"], result["memory"]
    lines = [
        f"head step: pooled {s['features']} -> embedding {s['dim']} -> C classes, batch {s['batch']} "
        f"({s['classes_per_batch']} classes x 4), CE + {LAMBDA} ClassMeanLoss, SGD; {s['repeats']} interleaved "
        "repeats, medians",
        f"machine: {env['cpu']}, nproc {env['nproc']}, torch threads {env['torch_threads']}, torch {env['torch']}"
        f", load average {env.get('loadavg_1min', float('nan')):.1f}",
    ]
    share = step.get("share_of_resnet50_step", {})
    for name, ms in step["median_ms"].items():
        extra = f", {100 * share[name]:.2f} % of a ResNet-50 step" if name in share else ""
        added = mem["added_mb"].get("train " + name)
        extra += "" if added is None else f"; peak RSS +{added:.0f} MB"
        lines.append(f"  {name:<18} {ms:8.2f} ms  x{step['ratio_vs_first'][name]:.2f}{extra}")
    lines.append(f"  former all-rows loss / shipped at the largest C: x{step['allrows_vs_shipped']:.2f}")
    if result["backbone"] is not None:
        b = result["backbone"]
        lines.append(
            f"ResNet-50 step at {b['measured_batch']} x {b['image_size']} px: {b['measured_ms']:.0f} ms "
            f"(estimated {b['estimated_ms_at_batch']:.0f} ms at batch {s['batch']})"
        )
    for name, ev in mem.get("evaluation", {}).items():
        rss = f"peak RSS +{mem['added_mb'][name]:.0f} MB, " if name in mem["added_mb"] else ""
        lines.append(
            f"{name}: {rss}{ev['images_per_s']:.0f} images/s, "
            f"top-1 {ev['top1']:.3f}, NCM {ev['ncm_top1']:.3f}"
        )
    lines.append(
        f"(holding the logits at the largest N instead: {mem['held_logits_gb_at_largest_n']:.1f} GB)"
    )
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int, nargs="+", default=[200, 1000, 10_000], help="first: baseline")
    parser.add_argument("--dim", type=int, default=512, help="embedding size")
    parser.add_argument("--batch", type=int, default=32, help="batch (classes of 4 images)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backbone-batch", type=int, default=2, help="ResNet-50 step measured at (0: skip)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--eval-images", type=int, default=100_000)
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--probe", help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report)


if __name__ == "__main__":
    main()
