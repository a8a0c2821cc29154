"""The exported graph (``elope export``) in an onnxruntime session, and its outputs as JSON answers.

Only onnxruntime and numpy: the file carries everything (class names, mean / std, the input side N, τ)
in its ``"elope"`` metadata entry (:func:`elope.deploy.export.export_metadata`), read and checked at
start-up by the torch-free :mod:`elope.exported` (the reader of ``elope predict --model`` too). The answer of one image is
what ``elope predict --model`` prints: the top classes with softmax scores and the box mapped from the
N×N input to the photo's stored pixels (:func:`elope.tasks.evaluate.original_box`: scaled, clamped).
"""

from __future__ import annotations

import base64
import hashlib
import io
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from elope.exported import EMBEDDING_OUTPUT, ExportedSession, file_sha256, open_session
from elope.serve.images import DEFAULT_MAX_DECODE_BYTES, Preprocess

__all__ = ["EMBEDDING_OUTPUT", "HEATMAP_FORMATS", "ServedModel"]

HEATMAP_FORMATS = ("none", "png", "list")


def _server_version() -> str:
    try:
        return version("elope")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "unknown"


class ServedModel:
    """An exported ONNX file in an onnxruntime CPU session.

    Args:
        source: the ``.onnx`` file, or its bytes (``elope serve --run`` exports into memory).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, the physical cores).
        max_pixels: the pixel limit of an upload, passed on to :attr:`preprocess`.
        max_decode_bytes: the most bytes decoding one upload may take (:func:`elope.pixels.decode_bytes`).
        label: how ``/model`` names the file.
    """

    def __init__(
        self,
        source: str | Path | bytes,
        *,
        threads: int | None = None,
        max_pixels: int,
        max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
        label: str = "",
    ) -> None:
        import onnxruntime as ort

        if isinstance(source, bytes):
            self.sha256, self.label = hashlib.sha256(source).hexdigest(), label or "<memory>"
            model: bytes | str = source
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: pass a file written by `elope export --format onnx`"
                )
            self.sha256, self.label, model = file_sha256(path), label or path.name, str(path)
        try:
            session = open_session(model, providers=["CPUExecutionProvider"], threads=threads, inter_op=1)
        except Exception as e:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ValueError(
                f"cannot load {self.label} as an ONNX model ({first}): it is truncated or not a file "
                "written by `elope export --format onnx`; export the run again"
            ) from e
        self.exported = ExportedSession(session, self.label)  # the one reader (elope.exported)
        self.metadata = self.exported.metadata
        self.meta: dict[str, Any] = self.metadata.raw
        self.classes: list[str] = list(self.metadata.classes)
        self.input_size = self.metadata.input_size
        self.outputs = list(self.metadata.outputs)
        spec = self.metadata.spec
        self.preprocess = Preprocess(self.input_size, spec.mean, spec.std, max_pixels, max_decode_bytes)
        self.onnxruntime = ort.__version__

    @property
    def has_embedding(self) -> bool:
        """Whether the graph has an ``embeddings`` output."""
        return EMBEDDING_OUTPUT in self.outputs

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs, by name, for a normalised batch (B, 3, N, N); a fixed-batch file in chunks."""
        return self.exported.run(images)

    def describe(self) -> dict[str, Any]:
        """``GET /model``: what the file is and what it answers."""
        m = self.meta
        return {
            "file": self.label,
            "sha256": self.sha256,
            "classes": self.classes,
            "num_classes": len(self.classes),
            "input_size": self.input_size,
            "image_size": self.metadata.spec.image_size,
            "tau": self.metadata.spec.tau,
            "box_margin": self.metadata.spec.box_margin,
            "mean": list(self.metadata.spec.mean),
            "std": list(self.metadata.spec.std),
            "batch": m.get("batch", "dynamic"),
            "opset": m.get("opset"),
            "outputs": self.outputs,
            "heatmap": "heatmaps" in self.outputs,
            "embedding": self.has_embedding,
            "exported_by": {"elope": m.get("elope_version"), "torch": m.get("torch_version")},
            "model": m.get("model"),
            "version": {
                "server": _server_version(),
                "onnxruntime": self.onnxruntime,
                "format": self.metadata.version,
            },
        }

    def answer(
        self,
        outputs: dict[str, np.ndarray],
        size: tuple[int, int],
        *,
        top: int,
        heatmap: str,
        embedding: bool,
    ) -> dict[str, Any]:
        """The JSON answer of one image from its row of the outputs (``scores`` (C,), ``boxes`` (4,), ...)."""
        scores = outputs["scores"]
        order = np.argsort(-scores, kind="stable")[: max(1, min(top, len(self.classes)))]
        w, h = size
        n = self.input_size
        box = outputs["boxes"].astype(np.float32) * np.float32([w / n, h / n, w / n, h / n])
        limits = [w, h, w, h]
        result: dict[str, Any] = {
            "size": [w, h],
            "classes": [
                {"class": self.classes[i], "index": int(i), "score": float(scores[i])} for i in order
            ],
            "box": [min(max(float(v), 0.0), float(m)) for v, m in zip(box, limits)],
        }
        if heatmap != "none":
            result["heatmap"] = _heatmap(outputs.get("heatmaps"), heatmap)
        if embedding:
            vector = outputs.get(EMBEDDING_OUTPUT)
            result["embedding"] = None if vector is None else [float(v) for v in vector.ravel()]
        return result


def _heatmap(values: np.ndarray | None, fmt: str) -> Any:
    """The heatmap (1, h, w) as nested lists, or as a grey PNG (min-max to 0..255) in a data URL."""
    if values is None:
        return None
    grid = values.reshape(values.shape[-2:]).astype(np.float32)
    if fmt == "list":
        return [[float(v) for v in row] for row in grid]
    low, high = float(grid.min()), float(grid.max())
    scaled = (grid - low) / (high - low) if high > low else np.zeros_like(grid)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(scaled * 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
