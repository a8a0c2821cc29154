"""Where ELoPE's extra time goes on a GPU: each part of the one-pass pipeline and of the training step timed
alone with CUDA events, beside the plain backbone, plus the top operators of ``torch.profiler`` (issue 5).

Same setting as ``benchmarks/gpu.py`` (ResNet-50, 448 px, bf16 autocast, channels_last, inference batch 32,
training batch 14). Every figure is the median over ``--iters`` calls after warm-up, in ms per call:

* inference parts: resize to the localizer's 64 px (antialiased bilinear, what ELoPE uses, and the
  alternatives plain bilinear and area), the localizer (stem + head), ``heatmap_to_box``,
  ``crop_and_resize`` (``roi_align``) and the classifier on the crops; then the whole ``predict`` and the
  plain ResNet-50;
* training parts: forward, CE + class-mean loss, backward + SGD of an ELoPE step, and the plain step.

    python -m benchmarks.gpu_breakdown                 # CUDA
    python -m benchmarks.gpu_breakdown --device cpu --tiny   # smoke test of the code path
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import AMP_DTYPES, amp_context, bench_device, benchmark_main
from elope.nn.backbones import TORCHVISION_BACKBONES
from elope.nn.crop import crop_and_resize
from elope.nn.localization import heatmap_to_box
from elope.nn.losses import ClassMeanLoss
from elope.nn.model import ELoPE
from elope.spec import ModelSpec


def _timer(device: torch.device) -> Callable[[Callable[[], Any], int, int], float]:
    def run(fn: Callable[[], Any], iters: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(iters):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - t))
        return statistics.median(times)

    return run


def _inference_calls(
    model: ELoPE, plain: torch.nn.Module, x: torch.Tensor, image_size: int
) -> dict[str, Callable[[], Any]]:
    """Each part of ``predict`` on the batch ``x`` as a call, its inputs computed once; then the whole
    ``predict`` and the plain forward. Build and call them under inference mode and autocast."""
    cl = torch.channels_last
    small = model.localizer.input_size
    x64 = F.interpolate(x, size=(small, small), mode="bilinear", antialias=True)
    heat = model.localizer.head(model.localizer.stem(x64))
    boxes = heatmap_to_box(heat, model.spec.tau, x.shape[-2:])
    crops = crop_and_resize(x, boxes, image_size)
    return {
        "resize_antialias_bilinear": lambda: F.interpolate(
            x, size=(small, small), mode="bilinear", antialias=True
        ),
        "resize_antialias_bilinear_nchw": lambda: F.interpolate(
            x.contiguous(), size=(small, small), mode="bilinear", antialias=True
        ),
        "resize_bilinear": lambda: F.interpolate(x, size=(small, small), mode="bilinear"),
        "resize_area": lambda: F.interpolate(x, size=(small, small), mode="area"),
        "localizer_stem_head": lambda: model.localizer.head(model.localizer.stem(x64)),
        "heatmap_to_box": lambda: heatmap_to_box(heat, model.spec.tau, x.shape[-2:]),
        "crop_and_resize": lambda: crop_and_resize(x, boxes, image_size),
        "crop_and_resize_to_channels_last": lambda: crop_and_resize(x, boxes, image_size).contiguous(
            memory_format=cl
        ),
        "classifier_on_crops_nchw": lambda: model(crops),
        "classifier_on_crops_channels_last": lambda: model(crops.contiguous(memory_format=cl)),
        "elope_predict": lambda: model.predict(x),
        "plain_forward": lambda: plain(x),
    }


def _train_steps(
    model: ELoPE,
    plain: torch.nn.Module,
    criterion: ClassMeanLoss,
    xt: torch.Tensor,
    labels: torch.Tensor,
    autocast: Callable[[], Any],
) -> dict[str, Callable[[], Any]]:
    """The parts of an ELoPE training step (forward, + loss, the whole step) and the plain step as calls;
    puts both networks in training mode with an SGD optimizer each."""
    model.train()
    plain.train()
    opt_e = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    opt_p = torch.optim.SGD(plain.parameters(), lr=1e-4, momentum=0.9)
    state: dict[str, Any] = {}

    def forward() -> None:
        with autocast():
            state["out"] = model(xt, return_embeddings=True)

    def loss() -> None:
        logits, emb = state["out"]
        state["loss"] = F.cross_entropy(logits.float(), labels) + 2.0 * criterion(emb.float(), labels)

    def backward() -> None:
        state["loss"].backward()
        opt_e.step()
        opt_e.zero_grad(set_to_none=True)

    def elope_step() -> None:
        forward()
        loss()
        backward()

    def plain_step() -> None:
        with autocast():
            out = plain(xt)
        F.cross_entropy(out.float(), labels).backward()
        opt_p.step()
        opt_p.zero_grad(set_to_none=True)

    def forward_loss() -> None:
        forward()
        loss()

    return {
        "train_forward": lambda: (forward(), state.pop("out")),
        "train_forward_loss": lambda: (forward_loss(), state.clear()),
        "elope_train_step": elope_step,
        "plain_train_step": plain_step,
    }


def _profiles(
    model: ELoPE,
    calls: dict[str, Callable[[], Any]],
    autocast: Callable[[], Any],
    dev: torch.device,
    profile_rows: int,
) -> dict[str, str]:
    """``torch.profiler``'s top operators (by CUDA time) over 5 calls of each of ``calls`` (CUDA only)."""
    tables = {}
    activity = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    for name, fn in calls.items():
        model.train(name == "elope_train_step")
        with torch.profiler.profile(activities=activity) as prof:
            for _ in range(5):
                if name == "elope_predict":
                    with torch.inference_mode(), autocast():
                        fn()
                else:
                    fn()
            torch.cuda.synchronize(dev)
        tables[name] = prof.key_averages().table(sort_by="cuda_time_total", row_limit=profile_rows)
    return tables


def run(
    device: str = "cuda",
    backbone: str = "resnet50",
    image_size: int = 448,
    infer_batch: int = 32,
    train_batch: int = 14,
    amp: str = "bf16",
    iters: int = 20,
    warmup: int = 5,
    num_classes: int = 200,
    profile_rows: int = 12,
) -> dict[str, Any]:
    """All the timings as a JSON-able dict (ms per call)."""
    dev = bench_device(device, "gpu_breakdown.py")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cl = torch.channels_last
    torch.manual_seed(0)
    model = (
        ELoPE(backbone, num_classes, spec=ModelSpec(image_size=image_size)).to(dev, memory_format=cl).eval()
    )
    plain = TORCHVISION_BACKBONES[backbone](num_classes=num_classes).to(dev, memory_format=cl).eval()
    criterion = ClassMeanLoss(num_classes, model.config["embedding_dim"]).to(dev)
    autocast = amp_context(dev, amp) or contextlib.nullcontext

    x = torch.randn(infer_batch, 3, image_size, image_size, device=dev).contiguous(memory_format=cl)
    time_it = _timer(dev)
    parts: dict[str, float] = {}
    with torch.inference_mode(), autocast():
        calls = _inference_calls(model, plain, x, image_size)
        for name, fn in calls.items():
            parts[name] = time_it(fn, iters, warmup)

    xt = x[:train_batch].clone()
    labels = torch.randint(0, num_classes, (train_batch,), device=dev)
    steps = _train_steps(model, plain, criterion, xt, labels, autocast)
    for name, fn in steps.items():
        parts[name] = time_it(fn, iters, warmup)

    tables = {}
    if dev.type == "cuda" and profile_rows:
        profiled = {"elope_predict": calls["elope_predict"], "elope_train_step": steps["elope_train_step"]}
        tables = _profiles(model, profiled, autocast, dev, profile_rows)
    return {
        "benchmark": "gpu_breakdown",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "backbone": backbone,
        "image_size": image_size,
        "infer_batch": infer_batch,
        "train_batch": train_batch,
        "amp": amp,
        "ms": parts,
        "ratios": {
            "predict_over_plain": parts["elope_predict"] / parts["plain_forward"],
            "train_step_over_plain": parts["elope_train_step"] / parts["plain_train_step"],
        },
        "profiles": tables,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"device: {result['device']} (torch {result['torch']}), {result['backbone']} {result['image_size']} px, "
        f"AMP {result['amp']}, channels_last, batch {result['infer_batch']} (inference) / "
        f"{result['train_batch']} (training); median ms per call"
    ]
    lines += [f"  {name:<36} {ms:9.3f} ms" for name, ms in result["ms"].items()]
    lines += [f"  {name:<36} {value:9.3f}" for name, value in result["ratios"].items()]
    for name, table in result["profiles"].items():
        lines += [f"\ntorch.profiler, 5 calls of {name}:", table]
    return "\n".join(lines)


TINY = {"backbone": "resnet18", "image_size": 64, "infer_batch": 2, "train_batch": 2, "warmup": 1}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="resnet18, 64 px, batch 2: a smoke test")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--amp", default="bf16", choices=sorted(AMP_DTYPES))


def _prepare(options: dict[str, Any]) -> dict[str, Any]:
    return options | TINY if options.pop("tiny") else options


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    description = (__doc__ or "").split("\n\n")[0]
    return benchmark_main(argv, description, _arguments, run, report, threads=None, prepare=_prepare)


if __name__ == "__main__":
    main()
