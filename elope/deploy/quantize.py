"""``elope export --quantize int8``: the exported ONNX pipeline with its classifying network in int8, for the
CPU.

onnxruntime's static quantization (``onnxruntime.quantization.quantize_static``), QDQ format
(``QuantizeLinear`` / ``DequantizeLinear`` pairs around each quantized operator, which onnxruntime fuses
into integer kernels when it loads the file), weights int8 per output channel, activations uint8 with
ranges calibrated (min/max) on training images preprocessed exactly as the graph's input (decoded, resized
to the crop source N, normalised: :func:`sample_split` on the run's eval transform).

Only the ``Conv``, ``MatMul`` and ``Gemm`` nodes of the backbone (the nodes the exporter names under
``/model``) are quantized — that is where the time goes (the localization module is ~1 % of it, Table 3); the
backbone's first convolution, the embedding layer and the classifier's last layer stay float32 (the logits
reach the softmax unquantized; the stem and the embedding: :func:`classifier_nodes`). The box step stays
float32 as exported: the resize to the localizer's input, the localization module, the min-max normalisation,
the threshold τ, the box and ``roi_align`` (a heatmap cell near τ would otherwise move a box by a whole cell,
and the ``MatMul``\\ s of the resize and of the ``peak`` rule's closure are not weights to quantize). So boxes
and heatmaps equal the float32 graph's; only the scores change, which
:func:`elope.deploy.check.check_quantized` measures.

The float32 graph is pre-processed first (``quant_pre_process``: onnxruntime's graph optimisations and
shape inference, which fold the exporter's ``Identity`` bias copies so that biases quantize too); the
metadata is the float32 export's plus ``quantization`` (what was quantized and how).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from elope import writer
from elope.deploy.export import save_onnx
from elope.deploy.pipeline import INPUT_NAME

__all__ = [
    "CALIBRATION_BATCH",
    "CHECK_IMAGES",
    "QUANTIZED_OPS",
    "classifier_nodes",
    "quantization_metadata",
    "quantize_graph",
    "quantize_int8",
    "sample_split",
    "unshare_weights",
]

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
#: node names of the classifying network: ``/model/...`` (and ``/model_1/...`` for a second call, e.g. a
#: test-time view); the box step's nodes are named ``/localizer/...`` or at the top level
CLASSIFIER_SCOPE = re.compile(r"^/model(_\d+)?/")
LAST_LAYER = re.compile(r"/classifier(_\d+)?/")  # the classifier's Gemm (each view's), kept float32
EMBEDDING = re.compile(r"/embedding(_\d+)?/")  # the embedding layer (each view's), kept float32
VIEW_SUFFIX = re.compile(r"_\d+/")  # the exporter's suffix on a module traced again (a test-time view)
CHECK_IMAGES = 64  # test images `elope export --quantize int8` compares int8 and float32 on
CALIBRATION_BATCH = 8  # images per calibration run of a dynamic-batch graph (min/max do not depend on it)


def classifier_nodes(proto: Any) -> list[str]:
    """Names of the nodes :func:`quantize_int8` quantizes: the classifying network's ``Conv``, ``MatMul``
    and ``Gemm`` nodes, never the box step's, nor the last linear layer (its output, the logits, would be
    quantized to 256 levels before the softmax, for a negligible share of the time), nor the first
    convolution of each view (the stem, on the normalised image) and the embedding layer: leaving those two
    in float32 agreed best with float32 on held-out training images (``elope.research.experiments.
    int8_settings``; ``docs/research/deployment.md``, "int8 on the CPU")."""
    nodes = [n for n in proto.graph.node if n.op_type in QUANTIZED_OPS and CLASSIFIER_SCOPE.match(n.name)]
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    stem = VIEW_SUFFIX.sub("/", convs[0]) if convs else None  # a second view's copy: conv1_1 for conv1
    return [
        n.name
        for n in nodes
        if not LAST_LAYER.search(n.name)
        and not EMBEDDING.search(n.name)
        and not (n.op_type == "Conv" and VIEW_SUFFIX.sub("/", n.name) == stem)
    ]


def unshare_weights(proto: Any, quantized: Sequence[str]) -> int:
    """Give every node left in float its own copy of an initializer that a quantized node reads too (the
    exporter stores equal tensors once: a localization module's stem copied from the backbone's shares its
    weights, zero biases are shared), so that quantizing the one leaves the other float32. Returns the
    number of copies made."""
    from onnx import TensorProto

    graph, chosen = proto.graph, set(quantized)
    initializers = {t.name: t for t in graph.initializer}
    read_quantized = {name for node in graph.node if node.name in chosen for name in node.input}
    copies: dict[str, str] = {}
    for node in graph.node:
        if node.name in chosen:
            continue
        for k, name in enumerate(node.input):
            if name not in initializers or name not in read_quantized:
                continue
            if name not in copies:
                copy = TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = copies[name] = f"{name}_float32"
                graph.initializer.append(copy)
            node.input[k] = copies[name]
    return len(copies)


def sample_split(dataset: Any, count: int) -> tuple[Tensor, Tensor]:
    """``count`` images of ``dataset`` (all when it holds fewer), evenly spaced over it (splits are often
    sorted by class), as the dataset's transform gives them, and their labels: ``(images, labels)``."""
    total = len(dataset)
    if total == 0:
        raise ValueError(f"the {getattr(dataset, 'split', '')} split holds no image")
    indices = sorted({i * total // count for i in range(count)}) if count < total else range(total)
    items = [dataset[i] for i in indices]
    images = torch.stack([torch.as_tensor(item[0]).as_subclass(Tensor) for item in items])
    return images.float(), torch.tensor([int(item[1]) for item in items])


def _batches(images: Tensor, batch: int | None) -> list[np.ndarray]:
    """``images`` in batches the graph takes: its fixed batch (the last one completed with the first
    images again), or :data:`CALIBRATION_BATCH` at a time for a dynamic batch."""
    size = batch or CALIBRATION_BATCH
    array = images.numpy().astype(np.float32)
    chunks = []
    for start in range(0, len(array), size):
        chunk = array[start : start + size]
        if batch and len(chunk) < batch:
            chunk = np.concatenate([chunk, np.resize(array, (batch - len(chunk), *array.shape[1:]))])
        chunks.append(np.ascontiguousarray(chunk))
    return chunks


class _Reader:
    """The calibration images as onnxruntime's ``CalibrationDataReader`` protocol wants them."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (feed := self.get_next()) is not None:
            yield feed


def quantization_metadata(nodes: int, calibration: int, source: str) -> dict[str, Any]:
    """The ``quantization`` entry of an int8 file's metadata."""
    import onnxruntime

    return {
        "type": "int8",
        "method": "onnxruntime static quantization, QDQ, min/max calibration",
        "weights": "int8, per output channel",
        "activations": "uint8",
        "operators": list(QUANTIZED_OPS),
        "quantized_nodes": int(nodes),
        "scope": "the backbone but its stem; the stem, the embedding, the last layer and the box step stay float32",
        "calibration_images": int(calibration),
        "calibration_source": source,
        "onnxruntime_version": onnxruntime.__version__,
    }


def quantize_graph(
    float_path: str | Path,
    calibration: Tensor,
    *,
    batch: int | None,
    select: Callable[[Any], list[str]] = classifier_nodes,
    settings: dict[str, Any] | None = None,
) -> tuple[Any, list[str]]:
    """The ONNX graph at ``float_path`` (input ``images``, batch ``batch`` or dynamic) statically quantized
    as the module describes, calibrated on ``calibration`` (normalised images, as the graph takes them):
    returns the quantized ``onnx.ModelProto`` (not written anywhere) and the names of the nodes quantized,
    those ``select(proto)`` names (:func:`classifier_nodes`; the benchmark passes its own for a plain
    network). ``settings``: keyword arguments of ``quantize_static`` over these defaults (calibration method,
    ``extra_options``; the study of ``elope.research.experiments.int8_settings``)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) < 1:
        raise ValueError("int8 quantization needs at least one calibration image")
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice goes to the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="elope-int8-") as tmp:
            prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            nodes = select(model)
            unshare_weights(model, nodes)
            defaults = {
                "quant_format": QuantFormat.QDQ,
                "per_channel": True,
                "activation_type": QuantType.QUInt8,
                "weight_type": QuantType.QInt8,
                "op_types_to_quantize": list(QUANTIZED_OPS),
                "nodes_to_quantize": nodes,
            }
            quantize_static(
                model,
                str(quantized),
                _Reader(_batches(calibration, batch)),
                **{**defaults, **(settings or {})},
            )
            return onnx.load(str(quantized)), nodes
    finally:
        logging.getLogger().setLevel(quiet)


def quantize_int8(
    float_path: str | Path,
    path: str | Path,
    metadata: dict[str, Any],
    calibration: Tensor,
    *,
    batch: int | None,
    source: str = "training images",
) -> Path:
    """Quantize the float32 pipeline at ``float_path`` (written by :func:`elope.deploy.export.export_onnx`
    with ``batch``) to int8 at ``path`` (:func:`quantize_graph`), calibrated on ``calibration``
    (normalised images (n, 3, N, N), as the graph takes them); ``metadata`` (the float32 file's) gains
    ``quantization``. Returns ``path``."""
    proto, nodes = quantize_graph(float_path, calibration, batch=batch)
    meta = {**metadata, "quantization": quantization_metadata(len(nodes), len(calibration), source)}
    writer.make_folder(Path(path).parent)
    return save_onnx(proto, path, meta)
