"""int8 on the CPU (issue 30, item 3): what ``elope export --quantize int8`` costs in accuracy and gains in
speed, against float32 and against a plain ResNet-50 quantized the same way, in one run.

Accuracy: a trained run (``--run``), or when none is given a run trained here on the procedural set with
the demo's recipe (``elope demo``: ImageNet EfficientNet-Lite0, 160 px crops of 320 px images;
``--train-classes`` classes, ``--train-epochs`` epochs per stage, default the recipe's; a few minutes). Its pipeline is exported
to ONNX in float32 and quantized to int8 exactly as the command does (:mod:`elope.deploy.quantize`:
onnxruntime static quantization, QDQ, per-channel int8 weights, calibrated on ``--calibration-images``
training images); both run on the test split (all of it, or ``--test-images`` evenly spaced): top-1 of each,
the change in points, the top-1 agreement and the largest box difference
(:func:`elope.deploy.check.check_quantized`).

Speed: onnxruntime (CPU) on four graphs with random weights (latency does not depend on them), timed
interleaved at batch ``--batch-size``: the ELoPE pipeline (``--backbone``, input and classifier at
``--image-size``) float32 and int8, and the plain torchvision network exported the same way (opset 18)
float32 and int8, quantized with the same settings (its ``Conv`` / ``MatMul`` / ``Gemm`` nodes but the
last layer, calibrated on the same random images). Reported: ms/image and the paired ratios int8 / float32
for each network, and ELoPE / plain in each precision.

    python -m benchmarks.quantize                                     # the demo's run; resnet50 at 224 px
    python -m benchmarks.quantize --run runs/cub --image-size 448 --json quantize.json
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import benchmark_main, environment, interleaved, measuring, num_threads
from benchmarks.export import _session, export_plain
from benchmarks.inference import build_models
from elope.deploy.check import check_quantized
from elope.deploy.export import export_model
from elope.deploy.quantize import (
    CLASSIFIER_SCOPE,
    LAST_LAYER,
    QUANTIZED_OPS,
    quantize_graph,
    quantize_int8,
    sample_split,
)
from elope.deploy.runtime import read_metadata
from elope.nn.backbones import TORCHVISION_BACKBONES

RATIOS = {
    "elope int8 / float32": ("elope_int8", "elope_fp32"),
    "plain int8 / float32": ("plain_int8", "plain_fp32"),
    "elope / plain, float32": ("elope_fp32", "plain_fp32"),
    "elope / plain, int8": ("elope_int8", "plain_int8"),
    "elope int8 / every layer int8": ("elope_int8", "elope_int8_every_layer"),
}
PLAIN_LAST_LAYER = re.compile(r"^/fc/")  # torchvision ResNets' last layer, kept float32 as ELoPE's


# ------------------------------------------------------------------------------------------- accuracy
def train_run(folder: Path, classes: int, epochs: int | None, seed: int = 0) -> Path:
    """A small run of the procedural set with the demo's recipe (``elope/configs/synthetic.yaml``: ImageNet
    EfficientNet-Lite0, 160 px crops from 320 px images, all four stages; ``classes`` classes, ``epochs`` per
    stage or the recipe's), in ``folder``; one torch thread (not measured; more threads only fight over a
    shared machine's cores)."""
    from elope.cli import main as cli

    run = folder / "run"
    args = [
        "train", "--dataset", "synthetic", "--out", str(run), "--seed", str(seed),
        "--set", f"dataset.synthetic.classes={classes}", "--set", "train.progress=false",
    ]  # fmt: skip
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    with num_threads(1):
        cli(args, standalone_mode=False)
    return run


def accuracy(run_dir: Path, calibration: int, test_images: int, folder: Path) -> dict[str, Any]:
    """The run's pipeline exported in float32 and int8 (as ``elope export --quantize int8``), both on the
    test split: top-1 of each, the change, the agreement, the largest box difference."""
    from elope.runs.loaded import load_run

    run = load_run(run_dir, "cpu")
    images, _ = sample_split(run.load_dataset("train")[0], calibration)
    test = run.load_dataset("test")[0]
    test_x, labels = sample_split(test, test_images or len(test))
    fp32 = export_model(run.model, folder / "run-fp32.onnx", classes=run.classes, batch=None)
    int8 = quantize_int8(fp32, folder / "run-int8.onnx", read_metadata(fp32), images, batch=None)
    report = check_quantized(fp32, int8, test_x, labels, min_agreement=0.0)
    return {
        "run": str(run_dir),
        "backbone": run.model.config.get("backbone"),
        "crop_source": run.spec.crop_source,
        "calibration_images": len(images),
        "test_images_of_split": len(test),
        **report,
    }


# ---------------------------------------------------------------------------------------------- speed
def _plain_nodes(proto: Any) -> list[str]:
    """The plain network's nodes to quantize: as ELoPE's (:func:`elope.deploy.quantize.classifier_nodes`),
    every Conv / MatMul / Gemm but the first convolution (the stem) and the last layer."""
    nodes = [n for n in proto.graph.node if n.op_type in QUANTIZED_OPS]
    stem = next((n.name for n in nodes if n.op_type == "Conv"), None)
    return [n.name for n in nodes if n.name != stem and not PLAIN_LAST_LAYER.match(n.name)]


def _every_layer(proto: Any) -> list[str]:
    """ELoPE's nodes as quantized before the stem and the embedding stayed float32: every backbone and
    embedding Conv / MatMul / Gemm but the last layer (what the stem and embedding in float32 cost)."""
    return [
        n.name
        for n in proto.graph.node
        if n.op_type in QUANTIZED_OPS and CLASSIFIER_SCOPE.match(n.name) and not LAST_LAYER.search(n.name)
    ]


def _int8_session(path: Path, calibration: torch.Tensor, threads: int | None, select: Any = None) -> Any:
    """An onnxruntime session on the int8 form of the graph at ``path`` (written next to it)."""
    import onnx

    options = {"select": select} if select else {}
    proto, _ = quantize_graph(path, calibration, batch=None, **options)
    out = path.with_name(f"{path.stem}-int8{'-' + select.__name__.strip('_') if select else ''}.onnx")
    onnx.save(proto, str(out))
    return _session(out, threads)


def speed_sessions(o: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The onnxruntime sessions: ELoPE and the plain network, float32 and int8 (dynamic batch), and ELoPE
    in int8 with every layer quantized (its stem and embedding too)."""
    model, baseline = build_models(o["backbone"], o["num_classes"], o["image_size"])
    model.spec = model.spec.replace(crop_source=o["image_size"])
    classes = [str(i) for i in range(o["num_classes"])]
    elope = export_model(model, folder / "elope.onnx", classes=classes, batch=None)
    plain = export_plain(baseline, folder / "plain.onnx", o["image_size"])
    generator = torch.Generator().manual_seed(1)
    calibration = torch.randn(
        o["speed_calibration"], 3, o["image_size"], o["image_size"], generator=generator
    )
    return {
        "elope_fp32": _session(elope, o["threads"]),
        "elope_int8": _int8_session(elope, calibration, o["threads"]),
        "elope_int8_every_layer": _int8_session(elope, calibration, o["threads"], _every_layer),
        "plain_fp32": _session(plain, o["threads"]),
        "plain_int8": _int8_session(plain, calibration, o["threads"], _plain_nodes),
    }


def speed(sessions: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
    """ms/image of each session at ``batch_size``, interleaved, and the paired ratios."""
    torch.manual_seed(o["batch_size"])
    images = torch.randn(o["batch_size"], 3, o["image_size"], o["image_size"]).numpy()
    contenders = {name: lambda s=s: s.run(None, {"images": images}) for name, s in sessions.items()}
    timings = interleaved(contenders, repeats=o["repeats"], warmup=o["warmup"])
    per_image = 1e3 / o["batch_size"]
    return {
        "batch_size": o["batch_size"],
        "repeats": o["repeats"],
        "ms_per_image": {name: timings.median(name) * per_image for name in timings},
        "stats_s": {name: timings.summary(name) for name in timings},
        "ratio": {label: timings.ratio(a, b) for label, (a, b) in RATIOS.items()},
    }


# ------------------------------------------------------------------------------------------------ run
def run(
    run_dir: str | None = None,
    train_classes: int = 12,
    train_epochs: int | None = None,
    calibration_images: int = 64,
    test_images: int = 0,
    backbone: str = "resnet50",
    image_size: int = 224,
    num_classes: int = 200,
    batch_size: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    speed_calibration: int = 8,
    threads: int | None = 2,
    flush_denormal: bool = True,
) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-able dict (``accuracy``, ``speed``, settings, environment)."""
    import onnxruntime as ort

    o = dict(locals())
    with measuring(threads, flush_denormal), tempfile.TemporaryDirectory(prefix="elope-bench-int8-") as tmp:
        folder = Path(tmp)
        trained = Path(run_dir) if run_dir else train_run(folder, train_classes, train_epochs)
        result_accuracy = accuracy(trained, calibration_images, test_images, folder)
        result_speed = speed(speed_sessions(o, folder), o)
    settings = ("backbone", "image_size", "num_classes", "speed_calibration", "threads")
    return {
        "benchmark": "quantize",
        "trained_here": run_dir is None,
        **({"train": {"classes": train_classes, "epochs": train_epochs}} if run_dir is None else {}),
        **{k: o[k] for k in settings},
        "onnxruntime": ort.__version__,
        "flush_denormal": flush_denormal,
        "environment": environment(),
        "accuracy": result_accuracy,
        "speed": result_speed,
    }


def report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    env, acc, sp = result["environment"], result["accuracy"], result["speed"]
    where = "a run trained here" if result["trained_here"] else acc["run"]
    ms = sp["ms_per_image"]
    return "\n".join(
        [
            f"quantize: onnxruntime {result['onnxruntime']} (CPU), int8 static QDQ against float32",
            f"machine: {env['cpu']}, nproc {env['nproc']}, threads {result['threads']}, load average "
            f"{env.get('loadavg_1min', float('nan')):.1f}",
            f"accuracy ({where}, {acc['backbone']}, input {acc['crop_source']} px, calibrated on "
            f"{acc['calibration_images']} training images, {acc['images']} test images): top-1 float32 "
            f"{100 * acc['accuracy_float32']:.1f} %, int8 {100 * acc['accuracy_int8']:.1f} % "
            f"({acc['accuracy_change']:+.1f} points), agreement {acc['agreement']:.3f}, boxes max diff "
            f"{acc['boxes_max_px']:.3f} px",
            f"speed ({result['backbone']}, {result['image_size']} px, random weights, batch {sp['batch_size']}, "
            f"{sp['repeats']} interleaved repeats, ms/image): "
            + ", ".join(f"{name} {value:.1f}" for name, value in ms.items()),
            "    paired ratios: "
            + ", ".join(f"{label} {r['median_paired_ratio']:.3f}" for label, r in sp["ratio"].items()),
        ]
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", dest="run_dir", default=None, help="trained run (default: train one, the demo's recipe)"
    )
    parser.add_argument("--train-classes", type=int, default=12, help="classes of the procedural run")
    parser.add_argument(
        "--train-epochs", type=int, default=None, help="epochs per stage (default: the recipe's)"
    )
    parser.add_argument("--calibration-images", type=int, default=64, help="training images to calibrate on")
    parser.add_argument("--test-images", type=int, default=0, help="test images (0: the whole split)")
    parser.add_argument("--backbone", default="resnet50", choices=sorted(TORCHVISION_BACKBONES))
    parser.add_argument("--image-size", type=int, default=224, help="speed: input and classifier side")
    parser.add_argument("--num-classes", type=int, default=200, help="speed: classes of the random networks")
    parser.add_argument("--batch-size", type=int, default=1, help="speed: images per call")
    parser.add_argument("--repeats", type=int, default=10, help="speed: timed repeats per contender")
    parser.add_argument("--warmup", type=int, default=2, help="speed: untimed calls per contender first")
    parser.add_argument("--speed-calibration", type=int, default=8, help="speed: random calibration images")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report)


if __name__ == "__main__":
    main()
