"""One-off record (issue 30, item 3): int8 calibration variants on one trained run, against its float32
export on the whole test split. `python -m elope.research.experiments.quantize_calibration RUN base pct nodw n256
entropy` from the repository root (results: docs/research/deployment.md, "int8 on the CPU")."""

import logging
import sys
import time
from pathlib import Path

import onnx
import torch

sys.path.insert(0, ".")
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from elope.deploy.check import _run_chunked
from elope.deploy.export import export_model
from elope.deploy.quantize import _batches, _Reader, classifier_nodes, sample_split, unshare_weights
from elope.deploy.runtime import ExportedModel
from elope.runs.loaded import load_run

logging.getLogger().setLevel(logging.ERROR)
torch.set_num_threads(1)
tmp = Path("/tmp/int8_exp")
tmp.mkdir(exist_ok=True)
run = load_run(sys.argv[1], "cpu")
train = run.load_dataset("train")[0]
test = run.load_dataset("test")[0]
tx, ty = sample_split(test, len(test))
fp = export_model(run.model, tmp / "fp32.onnx", classes=run.classes, batch=None)
ref = _run_chunked(ExportedModel(fp), tx)[0].argmax(1)
print("float acc", float((ref == ty).float().mean()), flush=True)
quant_pre_process(str(fp), str(tmp / "pre.onnx"), skip_symbolic_shape=True)


def trial(name, n=64, **kw):
    t = time.time()
    cal, _ = sample_split(train, n)
    m = onnx.load(str(tmp / "pre.onnx"))
    nodes = kw.pop("select", classifier_nodes)(m)
    unshare_weights(m, nodes)
    args = dict(
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        nodes_to_quantize=nodes,
    )
    args.update(kw)
    quantize_static(m, str(tmp / f"{name}.onnx"), _Reader(_batches(cal, None)), **args)
    import onnxruntime as ort

    s = ort.InferenceSession(str(tmp / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    outs = torch.cat(
        [torch.from_numpy(s.run(None, {"images": tx[i : i + 8].numpy()})[0]) for i in range(0, len(tx), 8)]
    )
    top = outs.argmax(1)
    print(
        name,
        "acc",
        float((top == ty).float().mean()),
        "agree",
        float((top == ref).float().mean()),
        f"{time.time() - t:.0f}s",
        flush=True,
    )


for spec in sys.argv[2:]:
    if spec == "base":
        trial("base")
    if spec == "n256":
        trial("n256", 256)
    if spec == "pct":
        trial("pct", calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.99})
    if spec == "entropy":
        trial("entropy", calibrate_method=CalibrationMethod.Entropy)
    if spec == "nodw":  # leave depthwise convs in float

        def sel(m):
            dw = {
                n.name
                for n in m.graph.node
                if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
            }
            return [x for x in classifier_nodes(m) if x not in dw]

        trial("nodw", select=sel)
    if spec == "sym":
        trial("sym", activation_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True})
