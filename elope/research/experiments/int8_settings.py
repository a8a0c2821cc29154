"""int8 settings chosen without the test split (issue 30, item 3): quantization variants of one trained run
compared with its float32 export on training images the calibration did not use, the rule declared before
any result: the variant with the highest top-1 agreement with float32 there wins, ties (within one image)
to the command's current setting; then the current and the chosen variant are read once on the test split.

    python -m elope.research.experiments.int8_settings RUN --json docs/experiments/cpu/int8-settings.json

Variants: ``minmax`` (the command: min/max ranges, 64 calibration images), ``minmax256`` (256 images),
``percentile`` (ranges at the 99.99th percentile of each activation, 64 images), ``float_ends`` (min/max,
the first convolution and the embedding layer left in float32 as well).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from elope.deploy.check import check_quantized
from elope.deploy.export import export_model, save_onnx
from elope.deploy.quantize import classifier_nodes, quantize_graph, sample_split
from elope.deploy.runtime import read_metadata
from elope.runs.loaded import load_run

SELECTION_IMAGES = 256  # held-out training images the variants are compared on


def _float_ends(proto: Any) -> list[str]:
    """The command's nodes less the first convolution and the embedding layer."""
    nodes = classifier_nodes(proto)
    first = next(n for n in nodes if "Conv" in n)
    return [n for n in nodes if n != first and not re.search(r"/embedding", n)]


def variants() -> dict[str, tuple[int, Callable[[Any], list[str]], dict[str, Any]]]:
    from onnxruntime.quantization import CalibrationMethod

    percentile = {
        "calibrate_method": CalibrationMethod.Percentile,
        "extra_options": {"CalibPercentile": 99.99},
    }
    return {
        "minmax": (64, classifier_nodes, {}),
        "minmax256": (256, classifier_nodes, {}),
        "percentile": (64, classifier_nodes, percentile),
        "float_ends": (64, _float_ends, {}),
    }


def held_out(train: Any, calibration: int) -> tuple[Tensor, Tensor]:
    """Up to :data:`SELECTION_IMAGES` training images that no variant calibrates on (the calibration takes
    evenly spaced indices ``i * n // count``; these are the ones in between)."""
    total = len(train)
    used = {i * total // count for count in (64, 256) for i in range(min(count, total))}
    free = [i for i in range(total) if i not in used]
    picked = free[:: max(1, len(free) // SELECTION_IMAGES)][:SELECTION_IMAGES]
    items = [train[i] for i in picked]
    return torch.stack([torch.as_tensor(x[0]).as_subclass(Tensor) for x in items]).float(), torch.tensor(
        [int(x[1]) for x in items]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run, "cpu")
    train, test = run.load_dataset("train")[0], run.load_dataset("test")[0]
    select_x, select_y = held_out(train, 256)
    test_x, test_y = sample_split(test, len(test))
    out: dict[str, Any] = {"run": args.run, "selection_images": len(select_x), "test_images": len(test_x)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_model(run.model, Path(tmp) / "fp32.onnx", classes=run.classes, batch=None)
        files = {}
        for name, (count, select, settings) in variants().items():
            calibration, _ = sample_split(train, count)
            proto, nodes = quantize_graph(fp32, calibration, batch=None, select=select, settings=settings)
            files[name] = save_onnx(proto, Path(tmp) / f"{name}.onnx", read_metadata(fp32))
            out[name] = {"nodes": len(nodes), "selection": check_quantized(fp32, files[name], select_x,
                         select_y, min_agreement=0.0)}  # fmt: skip
            print(name, out[name]["selection"], flush=True)
        best = max(variants(), key=lambda n: out[n]["selection"]["agreement"])
        one = 1.0 / len(select_x)
        if out[best]["selection"]["agreement"] - out["minmax"]["selection"]["agreement"] <= one:
            best = "minmax"
        out["chosen"] = best
        for name in dict.fromkeys(("minmax", best)):
            out[name]["test"] = check_quantized(fp32, files[name], test_x, test_y, min_agreement=0.0)
            print(name, "test", out[name]["test"], flush=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
