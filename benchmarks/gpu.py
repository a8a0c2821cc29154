"""GPU throughput and peak memory: ELoPE against the plain backbone, training and inference (issue 5).

One run, four contenders timed interleaved (blocks of ``--steps`` calls, ``torch.cuda.synchronize`` around
each block), AMP (bf16 by default), channels_last, 448 px, ResNet-50, random data:

* ``plain_train``: torchvision ResNet, CE, SGD step, batch ``--train-batch`` (14, the paper's);
* ``elope_train``: ELoPE forward(return_embeddings) + CE + 2.0·class-mean loss, SGD step, same batch;
* ``plain_infer``: torchvision ResNet forward, eval, ``inference_mode``, batch ``--infer-batch`` (32);
* ``elope_infer``: ``ELoPE.predict`` (localize → crop → classify), same batch.

Reported: images/s (median over blocks) of each, ELoPE/plain ratios of images/s, and peak memory
(``torch.cuda.max_memory_allocated``) of each contender run alone for two calls after a
``reset_peak_memory_stats`` (both models and their optimizer state stay resident, so ``peak_mb`` counts them;
``delta_mb`` is the peak minus what was allocated just before). The device name is printed with the figures.

    python -m benchmarks.gpu                               # CUDA: resnet50, 448 px, bf16, channels_last
    python -m benchmarks.gpu --json gpu.json
    python -m benchmarks.gpu --device cpu --tiny           # smoke test of the code path without a GPU

``--compile MODE`` (issue 12) runs another set of contenders in one interleaved run: for each batch of
``--infer-batches`` (default 32 and 128) the plain network and ``ELoPE.predict`` eager *and* compiled the
same way (:func:`elope.deploy.compiled.compile_module` / :func:`elope.deploy.compiled.compile_model`: batch norms folded,
``torch.compile(mode=MODE, dynamic=False)``; ``reduce-overhead`` = CUDA graphs), and the training step at
``--train-batch`` eager and with both networks ``torch.compile``'d (``--no-train`` skips it). Ratios:
ELoPE / plain per batch, eager and compiled (target <= 1.05), and eager / compiled speed-ups.

    python -m benchmarks.gpu --compile reduce-overhead --json gpu-compiled.json
    python -m benchmarks.gpu --device cpu --tiny --amp none --compile default --compile-backend aot_eager
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import (
    AMP_DTYPES,
    NoDeviceError,
    amp_context,
    benchmark_main,
    environment,
    interleaved,
    measuring,
    time_ratios,
)
from benchmarks.gpu_setting import peak_memory, repeat, setting
from benchmarks.train_step import elope_step_fn, make_optimizer, plain_step_fn
from elope.deploy.compiled import COMPILE_MODES
from elope.nn.backbones import TORCHVISION_BACKBONES
from elope.nn.losses import ClassMeanLoss
from elope.nn.model import ELoPE

__all__ = ["AMP_DTYPES", "DEFAULTS", "TINY", "NoDeviceError", "main", "report", "run"]

DEFAULTS = {
    "backbone": "resnet50",
    "image_size": 448,
    "train_batch": 14,
    "infer_batch": 32,
    "steps": 10,
    "rounds": 10,
}
TINY = {"backbone": "resnet18", "image_size": 64, "train_batch": 2, "infer_batch": 2, "steps": 2, "rounds": 2}


def _contenders(
    model: ELoPE, baseline: torch.nn.Module, dev: torch.device, memory_format: Any, o: dict
) -> dict:
    """The four contenders of :func:`run` (``o``: its options): name -> (call, batch)."""
    autocast = amp_context(dev, o["amp"])
    scaler = torch.amp.GradScaler(dev.type) if o["amp"] == "fp16" else None

    def images(batch: int) -> Tensor:
        x = torch.randn(batch, 3, o["image_size"], o["image_size"], device=dev)
        return x.contiguous(memory_format=memory_format)

    train_x, infer_x = images(o["train_batch"]), images(o["infer_batch"])
    labels = torch.randint(0, o["num_classes"], (o["train_batch"],), device=dev)
    criterion = ClassMeanLoss(o["num_classes"], model.config["embedding_dim"]).to(dev)
    context = autocast or contextlib.nullcontext

    def plain_infer() -> Tensor:
        baseline.eval()
        with torch.inference_mode(), context():
            return baseline(infer_x)

    def elope_infer() -> Any:
        with torch.inference_mode(), context():
            return model.predict(infer_x)

    step = {"autocast": autocast, "scaler": scaler}
    return {
        "plain_train": (plain_step_fn(baseline, make_optimizer(baseline.parameters()), train_x, labels, **step), o["train_batch"]),
        "elope_train": (
            elope_step_fn(model, criterion, make_optimizer(model.parameters()), train_x, labels, **step),
            o["train_batch"],
        ),
        "plain_infer": (plain_infer, o["infer_batch"]),
        "elope_infer": (elope_infer, o["infer_batch"]),
    }  # fmt: skip


def run(
    device: str = "cuda",
    backbone: str = "resnet50",
    image_size: int = 448,
    train_batch: int = 14,
    infer_batch: int = 32,
    amp: str = "bf16",
    channels_last: bool = True,
    steps: int = 10,
    rounds: int = 10,
    warmup: int = 1,
    num_classes: int = 200,
    threads: int | None = None,
    flush_denormal: bool = True,
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict. Raises :class:`NoDeviceError` without CUDA.

    One ELoPE model for both the step and ``predict`` (the training step leaves the localization module
    without gradients, so SGD skips its parameters).
    """
    options = dict(locals())
    dev, memory_format, model, baseline = setting(device, backbone, num_classes, image_size, channels_last)
    amp_context(dev, amp)  # an --amp the device cannot run: refused before any timing
    with measuring(threads, flush_denormal):
        contenders = _contenders(model, baseline, dev, memory_format, options)
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
        blocks = {name: repeat(fn, steps) for name, (fn, _) in contenders.items()}
        timings = interleaved(blocks, repeats=rounds, warmup=warmup, sync=sync)
        memory = {name: peak_memory(fn, dev) for name, (fn, _) in contenders.items()}
    per_step = {name: timings.median(name) / steps for name in timings}
    return {
        "benchmark": "gpu",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({environment()['cpu']})",
        **{
            k: options[k]
            for k in ("backbone", "image_size", "train_batch", "infer_batch", "amp", "channels_last")
        },
        "steps_per_block": steps,
        "rounds": rounds,
        "images_per_s": {name: contenders[name][1] / per_step[name] for name in timings},
        "ms_per_step": {name: value * 1e3 for name, value in per_step.items()},
        "stats_s": {name: timings.summary(name) for name in timings},
        # time ratios ELoPE / plain (paired over rounds): > 1 means ELoPE is slower
        "ratio": time_ratios(
            timings,
            {"train_time": ("elope_train", "plain_train"), "infer_time": ("elope_infer", "plain_infer")},
        ),
        "memory": memory,
        "flush_denormal": flush_denormal,
        "environment": environment(),
    }


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    ips, ms, mem = result["images_per_s"], result["ms_per_step"], result["memory"]
    lines = [
        f"device: {result['device']} (torch {result['environment']['torch']})",
        f"{result['backbone']}, {result['image_size']} px, AMP {result['amp']}, channels_last "
        f"{result['channels_last']}, train batch {result['train_batch']}, infer batch {result['infer_batch']}, "
        f"{result['rounds']} interleaved rounds of {result['steps_per_block']} steps, medians",
    ]
    for name in ips:
        line = f"  {name:<12} {ips[name]:10.1f} images/s  {ms[name]:9.2f} ms/step"
        if mem[name] is not None:
            line += f"  peak {mem[name]['peak_mb']:9.1f} MiB (+{mem[name]['delta_mb']:.1f} MiB over resident)"
        lines.append(line)
    lines.append(
        f"ELoPE / plain time ratio: train {result['ratio']['train_time']:.3f}, "
        f"inference {result['ratio']['infer_time']:.3f}"
    )
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (smoke test)")
    parser.add_argument(
        "--tiny", action="store_true", help=f"smoke-test defaults {TINY} (explicit options still win)"
    )
    parser.add_argument("--backbone", default=None, choices=sorted(TORCHVISION_BACKBONES))
    for name in ("image-size", "train-batch", "infer-batch"):
        key = name.replace("-", "_")
        parser.add_argument(
            f"--{name}", type=int, default=None, help=f"default {DEFAULTS[key]}, --tiny {TINY[key]}"
        )
    parser.add_argument("--amp", default="bf16", choices=sorted(AMP_DTYPES))
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument(
        "--steps", type=int, default=None, help="calls per timed block (default 10, --tiny 2)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved timed blocks per contender (default 10, --tiny 2)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed blocks per contender first (default 1; 3 with --compile: compilation, CUDA graph recording)",
    )
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument(
        "--compile",
        default=None,
        choices=COMPILE_MODES,
        help="issue 12: eager and torch.compile'd contenders in one run (benchmarks/gpu_compiled.py)",
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (aot_eager: smoke test)"
    )
    parser.add_argument(
        "--infer-batches",
        type=int,
        nargs="+",
        default=None,
        help="with --compile: inference batches (default 32 128, --tiny: --infer-batch)",
    )
    parser.add_argument("--no-train", action="store_true", help="with --compile: skip the training step")
    parser.add_argument("--no-infer", action="store_true", help="with --compile: skip inference")


def _prepare(options: dict[str, Any]) -> dict[str, Any]:
    """The ``--tiny`` or default values of the options left out."""
    defaults = TINY if options["tiny"] else DEFAULTS
    for key, default in defaults.items():
        if options[key] is None:
            options[key] = default
    return options


def _run(
    tiny: bool,
    compile: str | None,
    compile_backend: str,
    infer_batches: list[int] | None,
    train: bool,
    infer: bool,
    warmup: int | None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`run`, or with ``--compile`` :func:`benchmarks.gpu_compiled.run_compiled`."""
    if compile is None:
        return run(**options, warmup=1 if warmup is None else warmup)
    from benchmarks.gpu_compiled import COMPILED_INFER_BATCHES, run_compiled

    infer_batch = options.pop("infer_batch")
    batches = infer_batches or ([infer_batch] if tiny else list(COMPILED_INFER_BATCHES))
    return run_compiled(
        **options,
        warmup=3 if warmup is None else warmup,
        mode=compile,
        backend=compile_backend,
        train=train,
        infer=infer,
        infer_batches=batches,
    )


def _report(result: dict[str, Any]) -> str:
    if result["benchmark"] == "gpu-compiled":
        from benchmarks.gpu_compiled import report_compiled

        return report_compiled(result)
    return report(result)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, _run, _report, threads=0, prepare=_prepare)


if __name__ == "__main__":
    main()
