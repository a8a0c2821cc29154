"""``elope export --quantize int8`` (issue 30, item 3): the one-pass pipeline with its classifying network in
int8 (onnxruntime static quantization, QDQ), calibrated on training images; the box step stays float32.

Through the command line on the tiny procedural model: the file loads in onnxruntime, holds
``QuantizeLinear`` / ``DequantizeLinear`` nodes (in the classifying network only), says int8 in its
metadata, agrees with float32 on the top-1 of most test images and gives its boxes; bad option values are
refused with one clean line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import onnx
from serve_helpers import SOURCE, tiny_model

from elope.cli import main
from elope.data import build_dataset, eval_transform
from elope.deploy.check import ExportCheckError, check_quantized
from elope.deploy.quantize import VIEW_SUFFIX, _batches, classifier_nodes, sample_split
from elope.deploy.runtime import ExportedModel, read_metadata
from elope.runs.model_folder import save_model


@pytest.fixture(scope="module")
def exported(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run folder of the tiny model; exported float32 and int8 (dynamic batch) through `elope export`."""
    model, classes = tiny_model(synthetic_root)
    run = tmp_path_factory.mktemp("run")
    meta = {"classes": classes, "dataset": "synthetic", "root": str(synthetic_root)}
    save_model(model, run / "model", meta)
    out = tmp_path_factory.mktemp("exported")
    common = ["export", "--run", str(run), "--batch", "dynamic"]
    runner = CliRunner()
    fp32 = runner.invoke(main, [*common, "--out", str(out / "fp32.onnx"), "--no-check"])
    assert fp32.exit_code == 0, fp32.output
    args = [*common, "--out", str(out / "int8.onnx"), "--quantize", "int8", "--calibration-images", "6"]
    int8 = runner.invoke(main, args)
    assert int8.exit_code == 0, int8.output
    return {"run": run, "fp32": out / "fp32.onnx", "int8": out / "int8.onnx", "output": int8.output}


def _test_split(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    ds = build_dataset("synthetic", root, "test", transform=eval_transform(SOURCE))
    return sample_split(ds, len(ds))


def test_int8_file_loads_and_holds_qdq_nodes(exported: dict) -> None:
    proto = onnx.load(str(exported["int8"]))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") >= 10 and ops.count("DequantizeLinear") >= 10
    quantized = {n.name for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    assert quantized, "no DequantizeLinear node"
    # only the classifying network reads dequantized tensors: the box step (the localization module, the
    # threshold, roi_align) and the last layer's softmax stay float32
    produced = {out: n for n in proto.graph.node for out in n.output}
    readers = {
        node.name
        for node in proto.graph.node
        if any(i in produced and produced[i].op_type == "DequantizeLinear" for i in node.input)
    }
    assert readers and all(name.startswith("/model/") for name in readers), sorted(readers)
    assert not any("/classifier/" in name for name in readers)
    fp32_ops = [n.op_type for n in onnx.load(str(exported["fp32"])).graph.node]
    assert "QuantizeLinear" not in fp32_ops
    assert ExportedModel(exported["int8"]).session is not None


def test_int8_metadata(exported: dict) -> None:
    meta, float_meta = read_metadata(exported["int8"]), read_metadata(exported["fp32"])
    assert meta["quantization"]["type"] == "int8"
    assert meta["quantization"]["calibration_images"] == 6
    assert meta["quantization"]["quantized_nodes"] > 10
    assert "quantization" not in float_meta
    assert {k: v for k, v in meta.items() if k != "quantization"} == float_meta  # the rest kept as exported


def test_int8_agrees_with_float32_and_keeps_boxes(exported: dict, synthetic_root: Path) -> None:
    images, labels = _test_split(synthetic_root)
    report = check_quantized(exported["fp32"], exported["int8"], images, labels, min_agreement=0.0)
    assert report["agreement"] >= 0.8, report
    assert report["boxes_max_px"] <= 0.5, report
    assert 0.0 < report["scores_max_abs"] < 0.5, report  # int8 changed the scores, not beyond recognition
    assert "top-1 agreement" in exported["output"] and "against PyTorch" in exported["output"]


def test_check_refuses_a_departing_graph(exported: dict, synthetic_root: Path) -> None:
    images, labels = _test_split(synthetic_root)
    with pytest.raises(ExportCheckError, match="departs from float32"):
        check_quantized(exported["fp32"], exported["int8"], images, labels, min_agreement=1.01)


def test_only_the_classifying_network_is_quantized(exported: dict) -> None:
    proto = onnx.load(str(exported["fp32"]))
    names = classifier_nodes(proto)
    assert names and all(n.startswith("/model/") for n in names) and any(n.endswith("/Conv") for n in names)
    assert not any("classifier" in n or "/embedding" in n for n in names)  # last layer and embedding: float
    first_conv = next(
        n.name for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith("/model/")
    )
    assert first_conv not in names  # the stem stays float32 too


def test_the_last_layer_of_every_view_stays_float(synthetic_root: Path, tmp_path: Path) -> None:
    """With test-time views (``--tta flip``) the network is traced twice (``/model/classifier_1/...``)."""
    from elope.deploy.export import export_model

    model, classes = tiny_model(synthetic_root)
    path = export_model(model, tmp_path / "flip.onnx", classes=classes, batch=None, tta="flip")
    names = classifier_nodes(onnx.load(str(path)))
    proto = onnx.load(str(path))
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith("/model/")]
    second = [n for n in convs if VIEW_SUFFIX.search(n)]  # the second view's convolutions
    assert second and set(second[1:]) <= set(names)  # its backbone is quantized too, but for its stem
    assert convs[0] not in names and second[0] not in names  # both stems stay float32
    assert not any("classifier" in n for n in names)


def test_calibration_batches_fit_a_fixed_batch() -> None:
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.float32).reshape(5, 3, 2, 2)
    fixed = _batches(images, 2)
    assert [b.shape[0] for b in fixed] == [2, 2, 2]
    assert (fixed[-1][1] == images[0].numpy()).all()  # completed with the first image again
    assert [b.shape[0] for b in _batches(images, None)] == [5]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--quantize", "int8", "--format", "torchscript"], "--quantize int8 writes ONNX"),
        (["--quantize", "int8", "--calibration-images", "0"], "0 is not in the range 1<=x<=4096"),
        (["--quantize", "int8", "--calibration-images", "5000"], "5000 is not in the range"),
        (["--quantize", "int4"], "'int4' is not one of 'none', 'int8'"),
        (["--calibration-images", "8"], "--calibration-images calibrates --quantize int8"),
    ],
)
def test_bad_options_refused(exported: dict, tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["export", "--run", str(exported["run"]), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_json_of_the_metadata_is_one_entry(exported: dict) -> None:
    entries = [p.key for p in onnx.load(str(exported["int8"])).metadata_props]
    assert entries.count("elope") == 1
    json.loads(next(p.value for p in onnx.load(str(exported["int8"])).metadata_props if p.key == "elope"))
