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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: `python benchmarks/gpu.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor

from benchmarks.common import (
    add_common_arguments,
    emit,
    environment,
    flush_denormal,
    interleaved,
    num_threads,
)
from benchmarks.train_step import elope_step_fn, make_optimizer, plain_step_fn
from elope.deploy.compiled import COMPILE_MODES, compile_model, compile_module
from elope.nn.backbones import TORCHVISION_BACKBONES
from elope.nn.losses import ClassMeanLoss
from elope.nn.model import ELoPE

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}
DEFAULTS = {
    "backbone": "resnet50",
    "image_size": 448,
    "train_batch": 14,
    "infer_batch": 32,
    "steps": 10,
    "rounds": 10,
}
TINY = {"backbone": "resnet18", "image_size": 64, "train_batch": 2, "infer_batch": 2, "steps": 2, "rounds": 2}
COMPILED_INFER_BATCHES = (32, 128)
TARGET = 1.05  # issue 12: ELoPE predict / plain network, and the training step, on the GPU


class NoDeviceError(SystemExit):
    """Raised when the requested device is not available: the message goes to stderr, exit status 1."""


def _check_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NoDeviceError(
            "benchmarks/gpu.py: no CUDA device is available (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}, built with CUDA {torch.version.cuda}). Run it on a machine with an NVIDIA "
            "GPU, or use `--device cpu --tiny` for a smoke test of the code path."
        )
    if dev.type not in ("cuda", "cpu"):
        raise NoDeviceError(f"benchmarks/gpu.py: --device must be cuda[:N] or cpu, got {device!r}")
    return dev


def _autocast(device: torch.device, amp: str) -> Callable[[], Any] | None:
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return None
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _repeat(fn: Callable[[], Any], steps: int) -> Callable[[], None]:
    def block() -> None:
        for _ in range(steps):
            fn()

    return block


def _peak_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, float] | None:
    """Peak allocated memory (MiB) over two calls of ``fn`` run alone; None off CUDA."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mb": peak / 2**20, "delta_mb": (peak - before) / 2**20}


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
    flush: bool = True,
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict. Raises :class:`NoDeviceError` without CUDA."""
    dev = _check_device(device)
    if amp not in AMP_DTYPES:
        raise NoDeviceError(f"--amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    if amp == "fp16" and dev.type == "cpu":
        raise NoDeviceError("--amp fp16 needs CUDA; use bf16 or none on the CPU")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with num_threads(threads), flush_denormal(flush):
        torch.manual_seed(0)
        # One ELoPE model for both: predict needs the localization module (the training step leaves it
        # without gradients, so SGD skips its parameters).
        model = ELoPE(backbone, num_classes, image_size=image_size).to(dev, memory_format=memory_format)
        baseline = TORCHVISION_BACKBONES[backbone](num_classes=num_classes)
        baseline = baseline.to(dev, memory_format=memory_format)
        criterion = ClassMeanLoss(num_classes, model.config["embedding_dim"]).to(dev)
        autocast = _autocast(dev, amp)
        scaler = torch.amp.GradScaler(dev.type) if amp == "fp16" else None

        def images(batch: int) -> Tensor:
            x = torch.randn(batch, 3, image_size, image_size, device=dev)
            return x.contiguous(memory_format=memory_format)

        train_x, infer_x = images(train_batch), images(infer_batch)
        labels = torch.randint(0, num_classes, (train_batch,), device=dev)
        plain_train = plain_step_fn(
            baseline, make_optimizer(baseline.parameters()), train_x, labels, autocast=autocast, scaler=scaler
        )
        elope_train = elope_step_fn(
            model,
            criterion,
            make_optimizer(model.parameters()),
            train_x,
            labels,
            autocast=autocast,
            scaler=scaler,
        )

        def plain_infer() -> Tensor:
            baseline.eval()
            with torch.inference_mode(), autocast() if autocast is not None else contextlib.nullcontext():
                return baseline(infer_x)

        def elope_infer() -> Any:
            with torch.inference_mode(), autocast() if autocast is not None else contextlib.nullcontext():
                return model.predict(infer_x)

        calls = {
            "plain_train": plain_train,
            "elope_train": elope_train,
            "plain_infer": plain_infer,
            "elope_infer": elope_infer,
        }
        batches = {"plain_train": train_batch, "elope_train": train_batch}
        batches |= {"plain_infer": infer_batch, "elope_infer": infer_batch}
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
        timings = interleaved(
            {name: _repeat(fn, steps) for name, fn in calls.items()}, repeats=rounds, warmup=warmup, sync=sync
        )
        memory = {name: _peak_memory(fn, dev) for name, fn in calls.items()}

    per_step = {name: timings.median(name) / steps for name in timings}
    images_per_s = {name: batches[name] / per_step[name] for name in timings}
    return {
        "benchmark": "gpu",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({environment()['cpu']})",
        "backbone": backbone,
        "image_size": image_size,
        "train_batch": train_batch,
        "infer_batch": infer_batch,
        "amp": amp,
        "channels_last": channels_last,
        "steps_per_block": steps,
        "rounds": rounds,
        "images_per_s": images_per_s,
        "ms_per_step": {name: value * 1e3 for name, value in per_step.items()},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio": {
            # time ratios ELoPE / plain (paired over rounds): > 1 means ELoPE is slower
            "train_time": timings.ratio("elope_train", "plain_train")["median_paired_ratio"],
            "infer_time": timings.ratio("elope_infer", "plain_infer")["median_paired_ratio"],
        },
        "memory": memory,
        "flush_denormal": flush,
        "environment": environment(),
    }


def run_compiled(
    device: str = "cuda",
    backbone: str = "resnet50",
    image_size: int = 448,
    train_batch: int = 14,
    infer_batches: Sequence[int] = COMPILED_INFER_BATCHES,
    amp: str = "bf16",
    channels_last: bool = True,
    steps: int = 10,
    rounds: int = 10,
    warmup: int = 3,
    num_classes: int = 200,
    threads: int | None = None,
    flush: bool = True,
    mode: str = "reduce-overhead",
    backend: str = "inductor",
    train: bool = True,
    infer: bool = True,
) -> dict[str, Any]:
    """Eager and compiled contenders in one interleaved run (``--compile``); a JSON-able dict.

    The warm-up calls (``warmup`` blocks per contender) compile and, with CUDA graphs, record.
    """
    dev = _check_device(device)
    if amp not in AMP_DTYPES or (amp == "fp16" and dev.type == "cpu"):
        raise NoDeviceError(f"--amp must be one of {sorted(AMP_DTYPES)} (fp16 needs CUDA), got {amp!r}")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    options = {"mode": mode, "backend": backend, "dynamic": False}
    with num_threads(threads), flush_denormal(flush):
        torch.manual_seed(0)
        model = ELoPE(backbone, num_classes, image_size=image_size).to(dev, memory_format=memory_format)
        baseline = TORCHVISION_BACKBONES[backbone](num_classes=num_classes)
        baseline = baseline.to(dev, memory_format=memory_format).eval()
        model.eval()
        autocast = _autocast(dev, amp)

        def context() -> Any:
            return autocast() if autocast is not None else contextlib.nullcontext()

        fast_model = compile_model(model, **options)
        fast_plain = compile_module(baseline, **options)
        calls: dict[str, Callable[[], Any]] = {}
        batches: dict[str, int] = {}
        for b in infer_batches if infer else ():
            x = torch.randn(b, 3, image_size, image_size, device=dev).contiguous(memory_format=memory_format)

            def timed(fn: Callable[[Tensor], Any], x: Tensor = x) -> Callable[[], Any]:
                def call() -> Any:
                    with torch.inference_mode(), context():
                        return fn(x)

                return call

            calls |= {
                f"plain_infer_b{b}": timed(baseline),
                f"elope_infer_b{b}": timed(model.predict),
                f"plain_infer_b{b}_compiled": timed(fast_plain),
                f"elope_infer_b{b}_compiled": timed(fast_model.predict),
            }
            batches |= {
                name: b for name in list(calls) if name.startswith((f"plain_infer_b{b}", f"elope_infer_b{b}"))
            }
        if train:
            criterion = ClassMeanLoss(num_classes, model.config["embedding_dim"]).to(dev)
            scaler = torch.amp.GradScaler(dev.type) if amp == "fp16" else None
            train_x = torch.randn(train_batch, 3, image_size, image_size, device=dev)
            train_x = train_x.contiguous(memory_format=memory_format)
            labels = torch.randint(0, num_classes, (train_batch,), device=dev)
            train_nets = {"": (model, baseline)}
            train_nets["_compiled"] = (
                torch.compile(model, mode=mode if backend == "inductor" else None, backend=backend),
                torch.compile(baseline, mode=mode if backend == "inductor" else None, backend=backend),
            )
            for suffix, (elope_net, plain_net) in train_nets.items():
                calls[f"plain_train{suffix}"] = plain_step_fn(
                    plain_net,
                    make_optimizer(plain_net.parameters()),
                    train_x,
                    labels,
                    autocast=autocast,
                    scaler=scaler,
                )
                calls[f"elope_train{suffix}"] = elope_step_fn(
                    elope_net,
                    criterion,
                    make_optimizer(elope_net.parameters()),
                    train_x,
                    labels,
                    autocast=autocast,
                    scaler=scaler,
                )
                batches |= {f"plain_train{suffix}": train_batch, f"elope_train{suffix}": train_batch}
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
        timings = interleaved(
            {name: _repeat(fn, steps) for name, fn in calls.items()}, repeats=rounds, warmup=warmup, sync=sync
        )
        memory = {name: _peak_memory(fn, dev) for name, fn in calls.items()}

    per_step = {name: timings.median(name) / steps for name in timings}
    ratio: dict[str, float] = {}
    for b in infer_batches if infer else ():
        for suffix in ("", "_compiled"):
            ratio[f"infer_time_b{b}{suffix}"] = timings.ratio(
                f"elope_infer_b{b}{suffix}", f"plain_infer_b{b}{suffix}"
            )["median_paired_ratio"]
        for net in ("plain", "elope"):
            ratio[f"{net}_infer_b{b}_speedup"] = timings.ratio(
                f"{net}_infer_b{b}", f"{net}_infer_b{b}_compiled"
            )["median_paired_ratio"]
    if train:
        for suffix in ("", "_compiled"):
            ratio[f"train_time{suffix}"] = timings.ratio(f"elope_train{suffix}", f"plain_train{suffix}")[
                "median_paired_ratio"
            ]
    return {
        "benchmark": "gpu-compiled",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({environment()['cpu']})",
        "backbone": backbone,
        "image_size": image_size,
        "train_batch": train_batch if train else None,
        "infer_batches": list(infer_batches) if infer else [],
        "amp": amp,
        "channels_last": channels_last,
        "compile": {"mode": mode, "backend": backend, "dynamic": False, "batch_norms_folded": "inference"},
        "steps_per_block": steps,
        "rounds": rounds,
        "images_per_s": {name: batches[name] / per_step[name] for name in timings},
        "ms_per_step": {name: value * 1e3 for name, value in per_step.items()},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio": ratio,
        "target": TARGET,
        "meets_target": {
            key: value <= TARGET
            for key, value in ratio.items()
            if key.startswith(("infer_time", "train_time"))
        },
        "memory": memory,
        "flush_denormal": flush,
        "environment": environment(),
    }


def report_compiled(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run_compiled`'s result."""
    ips, ms, mem = result["images_per_s"], result["ms_per_step"], result["memory"]
    c = result["compile"]
    lines = [
        f"device: {result['device']} (torch {result['environment']['torch']})",
        f"{result['backbone']}, {result['image_size']} px, AMP {result['amp']}, channels_last "
        f"{result['channels_last']}, torch.compile {c['backend']} mode {c['mode']} (dynamic=False, batch norms "
        f"folded for inference), {result['rounds']} interleaved rounds of {result['steps_per_block']} steps",
    ]
    for name in ips:
        line = f"  {name:<26} {ips[name]:10.1f} images/s  {ms[name]:9.2f} ms/step"
        if mem[name] is not None:
            line += f"  peak {mem[name]['peak_mb']:9.1f} MiB"
        lines.append(line)
    lines.append(
        "ratios (time; ELoPE / plain, target <= "
        f"{result['target']}; *_speedup = eager / compiled): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["ratio"].items())
    )
    return "\n".join(lines)


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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (smoke test)")
    parser.add_argument(
        "--tiny", action="store_true", help=f"smoke-test defaults {TINY} (explicit options still win)"
    )
    parser.add_argument(
        "--backbone",
        default=None,
        choices=sorted(TORCHVISION_BACKBONES),
        help=f"default {DEFAULTS['backbone']}, --tiny {TINY['backbone']}",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"default {DEFAULTS['image_size']}, --tiny {TINY['image_size']}",
    )
    parser.add_argument(
        "--train-batch",
        type=int,
        default=None,
        help=f"default {DEFAULTS['train_batch']}, --tiny {TINY['train_batch']}",
    )
    parser.add_argument(
        "--infer-batch",
        type=int,
        default=None,
        help=f"default {DEFAULTS['infer_batch']}, --tiny {TINY['infer_batch']}",
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
        help="issue 12: eager and torch.compile'd contenders in one run (see the module docstring)",
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (aot_eager: smoke test)"
    )
    parser.add_argument(
        "--infer-batches",
        type=int,
        nargs="+",
        default=None,
        help=f"with --compile: inference batches (default {list(COMPILED_INFER_BATCHES)}, --tiny [2])",
    )
    parser.add_argument("--no-train", action="store_true", help="with --compile: skip the training step")
    parser.add_argument("--no-infer", action="store_true", help="with --compile: skip inference")
    add_common_arguments(parser, threads=0)
    args = parser.parse_args(argv)
    defaults = TINY if args.tiny else DEFAULTS
    options: dict[str, Any] = {
        key: default if getattr(args, key) is None else getattr(args, key)
        for key, default in defaults.items()
    }
    if args.compile is not None:
        infer_batch = options.pop("infer_batch")
        batches = args.infer_batches or ([infer_batch] if args.tiny else list(COMPILED_INFER_BATCHES))
        result = run_compiled(
            device=args.device,
            amp=args.amp,
            channels_last=not args.no_channels_last,
            warmup=3 if args.warmup is None else args.warmup,
            num_classes=args.num_classes,
            threads=args.threads or None,
            flush=not args.no_flush_denormal,
            mode=args.compile,
            backend=args.compile_backend,
            train=not args.no_train,
            infer=not args.no_infer,
            infer_batches=batches,
            **options,
        )
        emit(report_compiled(result), result, args.json)
        return result
    result = run(
        device=args.device,
        amp=args.amp,
        channels_last=not args.no_channels_last,
        warmup=1 if args.warmup is None else args.warmup,
        num_classes=args.num_classes,
        threads=args.threads or None,
        flush=not args.no_flush_denormal,
        **options,
    )
    emit(report(result), result, args.json)
    return result


if __name__ == "__main__":
    main()
