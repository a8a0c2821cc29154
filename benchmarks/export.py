"""Latency of the exported one-pass pipeline in onnxruntime (issue 12), against onnxruntime on an exported
plain ResNet-50 and against PyTorch, all in one interleaved run.

Contenders, same random images, eval / ``inference_mode``, random weights (latency does not depend on
them: the crop is always resized to ``image_size``):

* ``ort_plain``: torchvision ``backbone(num_classes=C)`` exported to ONNX (opset 18, dynamic batch) and run
  with onnxruntime on the CPU — the baseline;
* ``ort_elope``: the ELoPE pipeline exported by :func:`elope.deploy.export.export_model` (resize to 64 px,
  localization module, ``heatmap_to_box``, ``roi_align`` crop, backbone, GKMP, embedding, classifier,
  softmax: one graph), run with onnxruntime;
* ``torch_plain``: the torchvision network's forward in PyTorch;
* ``torch_elope``: ``ELoPE.predict`` in PyTorch;
* with ``--unoptimized``, ``ort_elope_v0``: the pipeline exported with the plain operator forms
  (``Resize``, ``RoiAlign``, the unrolled ``peak`` region growing; ``elope.deploy.onnx_ops.FAST_FORMS``
  off), so that the faster forms are measured against them in the same run.

``--ort-only`` leaves the PyTorch contenders out. The plain network runs at the classifier's input
(``--image-size``), the pipeline at ``--input-size`` (the crop source it is exported for).

onnxruntime gets ``--threads`` intra-op threads, PyTorch ``torch.set_num_threads(--threads)``. Reported:
medians and the paired ratios ``ort_elope / ort_plain`` (the headline: what the localization module costs in
deployment), ``ort_elope / torch_elope`` and ``ort_plain / torch_plain`` (onnxruntime against PyTorch).
The input is a square batch of ``--input-size`` (default: ``--image-size``, as in ``inference.py``).

    python -m benchmarks.export                                # resnet50, 448 px, batch 1 and 8, 2 threads
    python -m benchmarks.export --batch-sizes 1 --repeats 5 --json export.json
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    benchmark_main,
    environment,
    format_ms,
    interleaved,
    measuring,
)
from benchmarks.inference import build_models
from elope.deploy.export import OPSET, export_model
from elope.nn.backbones import TORCHVISION_BACKBONES

RATIOS = {
    "ort_elope / ort_plain": ("ort_elope", "ort_plain"),
    "ort_elope_v0 / ort_plain": ("ort_elope_v0", "ort_plain"),
    "ort_elope / torch_elope": ("ort_elope", "torch_elope"),
    "ort_plain / torch_plain": ("ort_plain", "torch_plain"),
    "torch_elope / torch_plain": ("torch_elope", "torch_plain"),
}


def auto_repeats(batch_size: int) -> int:
    """Default repetitions: few (each ResNet-50 call at 448 px takes seconds on a small CPU)."""
    return max(3, min(8, round(16 / batch_size)))


def export_plain(baseline: torch.nn.Module, path: Path, image_size: int) -> Path:
    """The plain network as ONNX (TorchScript-based exporter, opset 18, dynamic batch)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            baseline,
            (torch.randn(2, 3, image_size, image_size),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_elope(model: torch.nn.Module, path: Path, num_classes: int, fast: bool = True) -> Path:
    """The pipeline as ONNX (dynamic batch), with or without the faster operator forms of onnx_ops."""
    from elope.deploy import onnx_ops

    before, onnx_ops.FAST_FORMS = onnx_ops.FAST_FORMS, fast
    try:
        classes = [str(i) for i in range(num_classes)]
        return export_model(model, path, classes=classes, batch=None)
    finally:
        onnx_ops.FAST_FORMS = before


def _sessions(model: Any, baseline: Any, folder: Path, o: dict[str, Any]) -> dict[str, Any]:
    """The onnxruntime sessions: the pipeline (and its v0 forms with ``unoptimized``) and the plain network."""
    files = {"ort_elope": _export_elope(model, folder / "elope.onnx", o["num_classes"])}
    if o["unoptimized"]:
        files["ort_elope_v0"] = _export_elope(model, folder / "v0.onnx", o["num_classes"], fast=False)
    files["ort_plain"] = export_plain(baseline, folder / "plain.onnx", o["image_size"])
    return {name: _session(path, o["threads"]) for name, path in files.items()}


def _batch(
    model: Any, baseline: Any, sessions: dict[str, Any], batch: int, o: dict[str, Any]
) -> dict[str, Any]:
    """One batch size: every contender timed interleaved, medians and the ratio report."""
    torch.manual_seed(batch)
    images = torch.randn(batch, 3, o["input_size"], o["input_size"])
    small = torch.randn(batch, 3, o["image_size"], o["image_size"])
    with torch.inference_mode():
        feeds = {name: (small if name == "ort_plain" else images).numpy() for name in sessions}
        contenders = {
            name: lambda s=session, a=feeds[name]: s.run(None, {"images": a})
            for name, session in sessions.items()
        }
        if not o["ort_only"]:
            contenders["torch_plain"] = lambda x=small: baseline(x)
            contenders["torch_elope"] = lambda x=images: model.predict(x)
        n = o["repeats"] or auto_repeats(batch)
        timings = interleaved(contenders, repeats=n, warmup=o["warmup"])
    return {
        "batch_size": batch,
        "repeats": n,
        "median_ms": {name: timings.median(name) * 1e3 for name in timings},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio": {
            label: timings.ratio(a, b) for label, (a, b) in RATIOS.items() if a in timings and b in timings
        },
    }


def run(
    backbone: str = "resnet50",
    batch_sizes: Sequence[int] = (1, 8),
    image_size: int = 448,
    input_size: int | None = None,
    repeats: int | None = None,
    warmup: int = 1,
    threads: int | None = 2,
    flush_denormal: bool = True,
    num_classes: int = 200,
    unoptimized: bool = False,
    ort_only: bool = False,
    box_rule: str = "all",
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict (``batches``: one entry per batch size)."""
    import onnxruntime as ort

    o = dict(locals(), input_size=input_size or image_size)
    with measuring(threads, flush_denormal), tempfile.TemporaryDirectory() as tmp:
        model, baseline = build_models(backbone, num_classes, image_size)
        model.spec = model.spec.replace(crop_source=o["input_size"], box_rule=box_rule)  # input side N
        sessions = _sessions(model, baseline, Path(tmp), o)
        batches = [_batch(model, baseline, sessions, batch, o) for batch in batch_sizes]
    return {
        "benchmark": "export",
        **{k: o[k] for k in ("backbone", "image_size", "input_size", "num_classes", "box_rule")},
        "opset": OPSET,
        "onnxruntime": ort.__version__,
        "flush_denormal": flush_denormal,
        "environment": environment(),
        "batches": batches,
    }


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    env = result["environment"]
    lines = [
        f"export: onnxruntime {result['onnxruntime']} (CPU) vs PyTorch {env['torch']}, {result['backbone']}, "
        f"input {result['input_size']} px, classifier {result['image_size']} px, {result['num_classes']} "
        f"classes, opset {result['opset']}",
        f"machine: {env['cpu']}, nproc {env['nproc']}, threads {env['torch_threads']}, load average "
        f"{env.get('loadavg_1min', float('nan')):.1f}",
    ]
    for entry in result["batches"]:
        ms = entry["median_ms"]
        lines.append(
            f"batch {entry['batch_size']:>3} ({entry['repeats']} interleaved repeats, medians): "
            + ", ".join(f"{name} {format_ms(ms[name] / 1e3).strip()}" for name in ms)
        )
        lines.append(
            "    paired ratios: "
            + ", ".join(f"{label} {r['median_paired_ratio']:.3f}" for label, r in entry["ratio"].items())
        )
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="resnet50", choices=sorted(TORCHVISION_BACKBONES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--image-size", type=int, default=448, help="classifier input (crop size)")
    parser.add_argument("--input-size", type=int, default=None, help="pipeline input (default: --image-size)")
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per batch size (default: 8 at batch 1, 3 at 8)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per contender first")
    parser.add_argument("--unoptimized", action="store_true", help="also time the plain operator forms (v0)")
    parser.add_argument("--ort-only", action="store_true", help="leave the PyTorch contenders out")
    parser.add_argument("--box-rule", default="all", choices=["all", "peak"], help="the pipeline's box rule")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report)


if __name__ == "__main__":
    main()
