"""Where the exported pipeline's time goes inside onnxruntime (issue 19): onnxruntime's own profiler on the
ELoPE graph (``elope export``) and on an exported plain network, per operator type, and the difference.

Both graphs get the same random images (the plain network at the classifier's input size, the pipeline
at ``--input-size``, the crop source it is exported for: 2 × 448 = 896 px by default in ``elope export``), one session each with profiling on, ``--runs`` timed calls after
``--warmup`` untimed ones, interleaved (ELoPE, plain, ELoPE, ...). The profiler's ``Node`` events give each
node's kernel time; they are summed per operator type and divided by the runs. Operators the plain network
does not have (``Resize``, ``RoiAlign``, ``TopK``, the heatmap → box arithmetic, ``MaxPool`` + ``Mul`` of
the ``peak`` box rule's region growing, layout reorders around them) show up as the extra.

``--variant`` picks the box rule and heatmap upsampling of the exported model (as ``model.box_rule`` and
``model.heatmap_upsample`` of the recipe), so the cost of the ``peak`` rule's unrolled region growing can
be read off against ``all``.

    python -m benchmarks.ort_profile                               # resnet50, 448 px, batch 1, all + peak
    python -m benchmarks.ort_profile --backbone resnet18 --image-size 64 --input-size 96 --runs 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import benchmark_main, environment
from benchmarks.export import export_plain
from benchmarks.inference import build_models
from elope.deploy.export import export_model

VARIANTS = {
    "all": ("all", False),
    "peak": ("peak", False),
    "all-up": ("all", True),
    "peak-up": ("peak", True),
}


def _session(path: Path, threads: int, profile_prefix: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def node_times(profile: Path, skip_runs: int) -> tuple[dict[str, float], list[float], dict[str, float]]:
    """Per operator type: total kernel µs over the timed runs; the wall µs of each timed run; per node µs."""
    events = json.loads(profile.read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    timed = runs[skip_runs:]
    by_type: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        start = event["ts"]
        if not any(r["ts"] <= start <= r["ts"] + r["dur"] for r in timed):
            continue
        op = event.get("args", {}).get("op_name", "?")
        by_type[op] += event["dur"]
        by_node[event["name"].removesuffix("_kernel_time")] += event["dur"]
    return dict(by_type), [r["dur"] for r in timed], dict(by_node)


def _export_variant(model: torch.nn.Module, path: Path, input_size: int, variant: str) -> Path:
    rule, upsample = VARIANTS[variant]
    classes = [str(i) for i in range(model.classifier.out_features)]
    model.spec = model.spec.replace(crop_source=input_size, box_rule=rule, heatmap_upsample=upsample)
    return export_model(model, path, classes=classes, batch=None)


def _profile_all(files: dict[str, Path], inputs: dict[str, np.ndarray], images: np.ndarray, threads: int,
                 runs: int, warmup: int, tmp: Path) -> dict[str, Any]:  # fmt: skip
    sessions = {name: _session(path, threads, tmp / name) for name, path in files.items()}
    for _ in range(warmup + runs):  # interleaved
        for name, session in sessions.items():
            session.run(None, {"images": inputs.get(name, images)})
    result = {}
    for name, session in sessions.items():
        by_type, walls, by_node = node_times(Path(session.end_profiling()), warmup)
        result[name] = {
            "wall_ms_median": float(np.median(walls)) / 1e3,
            "kernel_ms_by_op": {k: v / runs / 1e3 for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])},
            "top_nodes_ms": {
                k: v / runs / 1e3 for k, v in sorted(by_node.items(), key=lambda kv: -kv[1])[:12]
            },
        }
    return result


def run(backbone: str, image_size: int, input_size: int | None, batch: int, variants: Sequence[str],
        runs: int, warmup: int, threads: int, num_classes: int) -> dict[str, Any]:  # fmt: skip
    """Profile the plain network and the pipeline in each variant; returns a JSON-able dict."""
    import onnxruntime as ort

    input_size = input_size or image_size
    model, baseline = build_models(backbone, num_classes, image_size)
    images = np.random.default_rng(0).normal(size=(batch, 3, input_size, input_size)).astype(np.float32)
    plain_images = np.ascontiguousarray(images[:, :, :image_size, :image_size])
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        files = {"plain": export_plain(baseline, tmp / "plain.onnx", image_size)}
        for variant in variants:
            files[f"elope-{variant}"] = _export_variant(model, tmp / f"{variant}.onnx", input_size, variant)
        profiles = _profile_all(files, {"plain": plain_images}, images, threads, runs, warmup, tmp)
    plain = profiles["plain"]
    for entry in profiles.values():
        entry["ratio_to_plain_wall"] = entry["wall_ms_median"] / plain["wall_ms_median"]
        entry["extra_ms_by_op"] = {
            op: ms - plain["kernel_ms_by_op"].get(op, 0.0)
            for op, ms in entry["kernel_ms_by_op"].items()
            if abs(ms - plain["kernel_ms_by_op"].get(op, 0.0)) >= 0.05
        }
    return {
        "benchmark": "ort_profile",
        "backbone": backbone,
        "image_size": image_size,
        "input_size": input_size,
        "batch": batch,
        "threads": threads,
        "runs": runs,
        "onnxruntime": ort.__version__,
        "environment": environment(),
        "profiles": profiles,
    }


def report(result: dict[str, Any]) -> str:
    """Per variant: wall time against plain, and the operator types that cost more than in plain."""
    env = result["environment"]
    lines = [
        f"ort_profile: {result['backbone']}, input {result['input_size']} px, crop {result['image_size']} px, batch "
        f"{result['batch']}, {result['threads']} threads, {result['runs']} runs, onnxruntime {result['onnxruntime']}",
        f"machine: {env['cpu']}, nproc {env['nproc']}, load average {env.get('loadavg_1min', float('nan')):.1f}",
    ]
    for name, entry in result["profiles"].items():
        total = sum(entry["kernel_ms_by_op"].values())
        lines.append(
            f"{name}: wall {entry['wall_ms_median']:.1f} ms (x{entry['ratio_to_plain_wall']:.3f} plain), kernels "
            f"{total:.1f} ms"
        )
        if name != "plain":
            extra = sorted(entry["extra_ms_by_op"].items(), key=lambda kv: -abs(kv[1]))
            lines.append("    extra vs plain: " + ", ".join(f"{op} {ms:+.2f} ms" for op, ms in extra[:14]))
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["all", "peak"], choices=sorted(VARIANTS))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--num-classes", type=int, default=200)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=None)


if __name__ == "__main__":
    main()
