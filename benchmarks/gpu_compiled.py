"""``python -m benchmarks.gpu --compile MODE`` (issue 12): eager and ``torch.compile``'d contenders in one
interleaved run.

For each batch of ``--infer-batches`` (default 32 and 128) the plain network and ``ELoPE.predict``, eager
*and* compiled the same way (:func:`elope.deploy.compiled.compile_module` /
:func:`elope.deploy.compiled.compile_model`: batch norms folded, ``torch.compile(mode=MODE,
dynamic=False)``; ``reduce-overhead`` = CUDA graphs), and the training step at ``--train-batch`` eager and
with both networks compiled (``--no-train`` skips it). Ratios: ELoPE / plain per batch, eager and compiled
(target <= 1.05), and eager / compiled speed-ups. The set-up and the ratio report are those of every
benchmark (:mod:`benchmarks.common`, :func:`benchmarks.gpu_setting.setting`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import amp_context, environment, interleaved, measuring, time_ratios
from benchmarks.gpu_setting import peak_memory, repeat, setting
from benchmarks.train_step import elope_step_fn, make_optimizer, plain_step_fn
from elope.deploy.compiled import compile_model, compile_module
from elope.nn.losses import ClassMeanLoss

__all__ = ["COMPILED_INFER_BATCHES", "TARGET", "report_compiled", "run_compiled"]

COMPILED_INFER_BATCHES = (32, 128)
TARGET = 1.05  # issue 12: ELoPE predict / plain network, and the training step, on the GPU

Contenders = dict[str, tuple[Callable[[], Any], int]]  # name -> (call, images per call)


def _infer_contenders(model: Any, baseline: Any, o: dict[str, Any], context: Callable[[], Any]) -> Contenders:
    """Per inference batch: plain and ELoPE, eager and compiled (``o``: the options of the run)."""
    options = {"mode": o["mode"], "backend": o["backend"], "dynamic": False}
    fast_model, fast_plain = compile_model(model, **options), compile_module(baseline, **options)
    calls: Contenders = {}
    for b in o["infer_batches"]:
        x = torch.randn(b, 3, o["image_size"], o["image_size"], device=o["dev"])
        x = x.contiguous(memory_format=o["memory_format"])

        def timed(fn: Callable[[Tensor], Any], x: Tensor = x) -> Callable[[], Any]:
            def call() -> Any:
                with torch.inference_mode(), context():
                    return fn(x)

            return call

        calls[f"plain_infer_b{b}"] = (timed(baseline), b)
        calls[f"elope_infer_b{b}"] = (timed(model.predict), b)
        calls[f"plain_infer_b{b}_compiled"] = (timed(fast_plain), b)
        calls[f"elope_infer_b{b}_compiled"] = (timed(fast_model.predict), b)
    return calls


def _train_contenders(model: Any, baseline: Any, o: dict[str, Any], autocast: Any) -> Contenders:
    """The training step of both networks, eager and ``torch.compile``'d."""
    dev, batch, classes = o["dev"], o["train_batch"], o["num_classes"]
    criterion = ClassMeanLoss(classes, model.config["embedding_dim"]).to(dev)
    scaler = torch.amp.GradScaler(dev.type) if o["amp"] == "fp16" else None
    x = torch.randn(batch, 3, o["image_size"], o["image_size"], device=dev)
    x = x.contiguous(memory_format=o["memory_format"])
    labels = torch.randint(0, classes, (batch,), device=dev)
    mode = o["mode"] if o["backend"] == "inductor" else None
    nets = {
        "": (model, baseline),
        "_compiled": tuple(torch.compile(n, mode=mode, backend=o["backend"]) for n in (model, baseline)),
    }
    calls: Contenders = {}
    step = {"autocast": autocast, "scaler": scaler}
    for suffix, (elope_net, plain_net) in nets.items():
        plain = plain_step_fn(plain_net, make_optimizer(plain_net.parameters()), x, labels, **step)
        elope = elope_step_fn(elope_net, criterion, make_optimizer(elope_net.parameters()), x, labels, **step)
        calls[f"plain_train{suffix}"], calls[f"elope_train{suffix}"] = (plain, batch), (elope, batch)
    return calls


def _ratios(timings: Any, o: dict[str, Any]) -> dict[str, float]:
    """ELoPE / plain per batch and step, eager and compiled; eager / compiled speed-ups."""
    pairs: dict[str, tuple[str, str]] = {}
    for b in o["infer_batches"]:
        for suffix in ("", "_compiled"):
            pairs[f"infer_time_b{b}{suffix}"] = (f"elope_infer_b{b}{suffix}", f"plain_infer_b{b}{suffix}")
        for net in ("plain", "elope"):
            pairs[f"{net}_infer_b{b}_speedup"] = (f"{net}_infer_b{b}", f"{net}_infer_b{b}_compiled")
    if o["train"]:
        for suffix in ("", "_compiled"):
            pairs[f"train_time{suffix}"] = (f"elope_train{suffix}", f"plain_train{suffix}")
    return time_ratios(timings, pairs)


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
    flush_denormal: bool = True,
    mode: str = "reduce-overhead",
    backend: str = "inductor",
    train: bool = True,
    infer: bool = True,
) -> dict[str, Any]:
    """Eager and compiled contenders in one interleaved run (``--compile``); a JSON-able dict.

    The warm-up calls (``warmup`` blocks per contender) compile and, with CUDA graphs, record.
    """
    o = dict(locals(), infer_batches=list(infer_batches) if infer else [])
    o["dev"], o["memory_format"], model, baseline = setting(
        device, backbone, num_classes, image_size, channels_last
    )
    autocast = amp_context(o["dev"], amp)
    with measuring(threads, flush_denormal):
        model.eval()
        baseline.eval()
        calls = _infer_contenders(model, baseline, o, autocast or contextlib.nullcontext)
        if train:
            calls |= _train_contenders(model, baseline, o, autocast)
        sync = (lambda: torch.cuda.synchronize(o["dev"])) if o["dev"].type == "cuda" else None
        blocks = {name: repeat(fn, steps) for name, (fn, _) in calls.items()}
        timings = interleaved(blocks, repeats=rounds, warmup=warmup, sync=sync)
        memory = {name: peak_memory(fn, o["dev"]) for name, (fn, _) in calls.items()}
    return _result(o, calls, timings, memory)


def _result(o: dict[str, Any], calls: Contenders, timings: Any, memory: dict[str, Any]) -> dict[str, Any]:
    dev, steps = o["dev"], o["steps"]
    per_step = {name: timings.median(name) / steps for name in timings}
    ratio = _ratios(timings, o)
    return {
        "benchmark": "gpu-compiled",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({environment()['cpu']})",
        **{k: o[k] for k in ("backbone", "image_size", "infer_batches", "amp", "channels_last")},
        "train_batch": o["train_batch"] if o["train"] else None,
        "compile": {
            "mode": o["mode"],
            "backend": o["backend"],
            "dynamic": False,
            "batch_norms_folded": "inference",
        },
        "steps_per_block": steps,
        "rounds": o["rounds"],
        "images_per_s": {name: calls[name][1] / per_step[name] for name in timings},
        "ms_per_step": {name: value * 1e3 for name, value in per_step.items()},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio": ratio,
        "target": TARGET,
        "meets_target": {
            k: v <= TARGET for k, v in ratio.items() if k.startswith(("infer_time", "train_time"))
        },
        "memory": memory,
        "flush_denormal": o["flush_denormal"],
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
