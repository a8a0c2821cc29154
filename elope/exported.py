"""The metadata of a file written by ``elope export``, read and checked once, without torch.

``elope export`` stores, beside the one-pass graph of Fig. 1 (Hanselmann & Ney, WACV 2020), a JSON object
under the key :data:`METADATA_KEY` (:func:`elope.deploy.export.export_metadata`): the class names, the
model's ``spec`` (:meth:`elope.spec.ModelSpec.to_dict`, as in ``model.json``: the normalisation, τ, the
classifier side and the crop source, which is the graph's input side N), the batch and the names of the
outputs. Two readers
use it: ``elope predict / evaluate / embed --model`` (:class:`elope.deploy.runtime.ExportedModel`, with
torch) and ``elope serve`` (:class:`elope.serve.model.ServedModel`, without torch). Both read it here, so a
file is accepted or refused the same way by both, with one line naming the file, the value and the fix:

* the format version is known (:data:`FORMAT_VERSION`; a newer one is refused: upgrade elope);
* the spec is valid, checked by :meth:`elope.spec.ModelSpec.from_dict` as for a run: sides in range (a
  side of 100,000 would need tens of GB), ``mean`` and ``std`` three finite numbers each, ``std``
  positive, τ in [0, 1), the box margin in [0, 1]. A file of version 1 kept the spec's values at the top
  level, the crop source as ``input_size`` (:meth:`elope.spec.ModelSpec.from_legacy`; no ``image_size``
  in files of elope 0.1.0: the input side);
* the class list is a non-empty list of strings, as long as the graph's score output is wide
  (:func:`check_score_width`; from the ONNX output shape before any work, :func:`read_session`);
* the batch is ``"dynamic"`` or a whole number in :data:`BATCH_RANGE`; the outputs include ``scores`` and
  ``boxes`` and are the graph's own; JSON's NaN and Infinity are refused anywhere in the object.

:func:`run_in_fixed_batches` runs a fixed-batch graph on any number of images (the last chunk padded),
for numpy arrays and tensors (a TorchScript file) alike. :func:`open_session` builds the onnxruntime
session of an ONNX file and :class:`ExportedSession` holds it with its checked metadata and runs it on numpy
arrays, outputs by name: the one reader of an ONNX file, for ``elope serve`` (on the CPU) and
:class:`elope.deploy.runtime.ExportedModel` (any device) alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from elope.spec import ModelSpec

__all__ = [
    "BATCH_RANGE",
    "EMBEDDING_OUTPUT",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ExportMetadata",
    "ExportedSession",
    "MetadataError",
    "check_score_width",
    "file_sha256",
    "open_session",
    "parse_metadata",
    "read_session",
    "run_in_fixed_batches",
]


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks: an exported graph's identity (``elope serve``'s
    ``/model``, the plan of ``elope predict --out``), an image's for ``elope data check``'s copies
    (``hashlib.file_digest`` is Python 3.11+)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


METADATA_KEY = "elope"  # the ONNX metadata_props key; the TorchScript extra file is METADATA_KEY + ".json"
FORMAT_NAME = "elope-export"
FORMAT_VERSION = 2  # the newest version this elope reads (and writes); 1: the spec's values at the top level
BATCH_RANGE = (1, 4096)  # a fixed batch (export --batch <= 4096)
REQUIRED_OUTPUTS = ("scores", "boxes")
EMBEDDING_OUTPUT = (
    "embeddings"  # the last output with `elope export --embedding` (what `elope serve` returns)
)

Array = TypeVar("Array")


class MetadataError(ValueError):
    """An exported file whose metadata is missing, unreadable or out of range (a one-line message)."""


@dataclass(frozen=True)
class ExportMetadata:
    """The checked metadata: ``classes``, the ``spec`` (τ, sides, normalisation), ``batch`` (None: dynamic),
    ``outputs`` (in the graph's order), ``tta`` (the views baked in, or None), and the whole JSON ``raw``."""

    classes: tuple[str, ...]
    spec: ModelSpec
    batch: int | None
    outputs: tuple[str, ...]
    tta: str | None
    version: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def input_size(self) -> int:
        """The side N of the graph's input (B, 3, N, N): the crop source."""
        return self.spec.crop_source


def _refuse(source: str, problem: str) -> MetadataError:
    return MetadataError(
        f"{source}: its '{METADATA_KEY}' metadata {problem}; export the run again with `elope export`"
    )


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _batch(raw: dict[str, Any], source: str) -> int | None:
    value = raw.get("batch", "dynamic")
    if value == "dynamic":
        return None
    low, high = BATCH_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(source, f"has batch {value!r}, not 'dynamic' or a whole number in {low}..{high}")
    return value


def _strings(raw: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _refuse(source, f"has {key} {_short(value)}, not a non-empty list of names")
    return tuple(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _load(text: str | None, source: str) -> dict[str, Any]:
    if not text:
        raise MetadataError(f"{source} carries no '{METADATA_KEY}' metadata: not written by `elope export`")
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise _refuse(source, f"is not valid JSON ({str(error)[:80]})") from None
    if not isinstance(raw, dict):
        raise _refuse(source, f"is {type(raw).__name__}, not a JSON object")
    version = raw.get("version")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME or not isinstance(version, int) or version < 1:
        raise _refuse(
            source, f"is not elope's export format (format {raw.get('format')!r}, version {version!r})"
        )
    if version > FORMAT_VERSION:
        raise MetadataError(
            f"{source} was exported in format version {version}, newer than this elope reads "
            f"(version {FORMAT_VERSION}): upgrade elope (pip install -U elope), or export it with this version"
        )
    return raw


def _spec(raw: dict[str, Any], source: str) -> ModelSpec:
    """The spec of the metadata: ``spec`` (version 2 on), or the values version 1 kept at the top level
    (:meth:`elope.spec.ModelSpec.from_legacy`: the box rule and the upsampling were under ``model``, the
    crop source was ``input_size``; files of elope 0.1.0 have no ``image_size``: the input side)."""
    try:
        if raw["version"] >= 2:
            return ModelSpec.from_dict(raw.get("spec"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise _refuse(source, f"has a spec out of range ({error})") from None
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    flat = {**model, **raw}
    flat.setdefault("image_size", raw.get("input_size"))
    try:
        return ModelSpec.from_legacy(flat, crop_source="input_size")
    except (TypeError, ValueError) as error:
        problem = str(error).replace("crop_source", "crop_source (input_size in version 1)")
        raise _refuse(source, f"has a spec out of range ({problem})") from None


def parse_metadata(
    text: str | None,
    source: str,
    *,
    graph_outputs: Sequence[str] | None = None,
    score_width: int | None = None,
    input_side: int | None = None,
) -> ExportMetadata:
    """The checked metadata of the file named ``source`` from its JSON ``text`` (see the module's list).

    Args:
        graph_outputs: the graph's output names, when known (they must be the metadata's ``outputs``).
        score_width: the width C of the ``scores`` output (B, C), when the graph states it.
        input_side: the side N of the graph's input (B, 3, N, N), when the graph states it.

    Raises:
        MetadataError: one line naming ``source``, the value and the fix.
    """
    raw = _load(text, source)
    spec = _spec(raw, source)
    input_size = spec.crop_source
    classes, outputs = _strings(raw, "classes", source), _strings(raw, "outputs", source)
    if outputs[:2] != REQUIRED_OUTPUTS:
        raise _refuse(source, f"lists outputs {list(outputs)}, which do not begin with scores, boxes")
    if graph_outputs is not None and tuple(graph_outputs) != outputs:
        raise _refuse(source, f"lists outputs {list(outputs)}, but the graph has {list(graph_outputs)}")
    if input_side is not None and input_side != input_size:
        raise _refuse(
            source, f"has crop_source {input_size}, but the graph takes {input_side} x {input_side}"
        )
    tta = raw.get("tta")
    if tta is not None and not isinstance(tta, str):
        raise _refuse(source, f"has tta {tta!r}, not a name or null")
    meta = ExportMetadata(classes, spec, _batch(raw, source), outputs, tta, raw["version"], raw)
    if score_width is not None:
        check_score_width(meta, score_width, source)
    return meta


def check_score_width(meta: ExportMetadata, width: int, source: str) -> None:
    """Refuse a class list that does not name every score (one class dropped, or one named twice over)."""
    if width != len(meta.classes):
        raise _refuse(source, f"lists {len(meta.classes)} class names, but the graph scores {width} classes")


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def read_session(session: Any, source: str) -> ExportMetadata:
    """The checked metadata of an onnxruntime ``InferenceSession`` (no import of onnxruntime here): its
    ``elope`` entry, checked against the graph's output names, its score width and its input side."""
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    outputs = session.get_outputs()
    inputs = session.get_inputs()
    scores = [o for o in outputs if o.name == "scores"]
    width = _static(scores[0].shape[-1]) if scores and scores[0].shape else None
    shape = inputs[0].shape if inputs else None
    side = _static(shape[-1]) if shape and len(shape) == 4 else None
    return parse_metadata(
        text, source, graph_outputs=[o.name for o in outputs], score_width=width, input_side=side
    )


def run_in_fixed_batches(
    run: Callable[[Array], Sequence[Array]],
    images: Array,
    batch: int | None,
    concat: Callable[[list[Array]], Array],
) -> list[Array]:
    """``run`` (a graph of fixed ``batch``, or any batch when None) on any number of ``images``: in chunks of
    ``batch``, the last one padded with copies of its last image and its outputs cut back. ``concat``
    joins arrays along the batch axis (``np.concatenate`` or ``torch.cat``)."""
    count = len(images)  # type: ignore[arg-type]
    if batch is None or count == batch:
        return list(run(images))
    parts: list[list[Array]] = []
    for start in range(0, count, batch):
        chunk = images[start : start + batch]  # type: ignore[index]
        n = len(chunk)
        if n < batch:
            chunk = concat([chunk] + [chunk[-1:]] * (batch - n))
        parts.append([out[:n] for out in run(chunk)])  # type: ignore[index]
    return [concat(list(outs)) for outs in zip(*parts)]


def open_session(
    model: str | bytes, *, providers: Sequence[Any], threads: int | None = None, inter_op: int | None = None
) -> Any:
    """An onnxruntime ``InferenceSession`` of an ONNX file (its path, or its bytes) on ``providers``, with
    ``threads`` intra-op threads (default: onnxruntime's choice) and ``inter_op`` inter-op threads. What
    onnxruntime raises for a file it cannot load is left to the caller to phrase."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if inter_op:
        options.inter_op_num_threads = inter_op
    return ort.InferenceSession(model, options, providers=list(providers))


class ExportedSession:
    """An onnxruntime session of a file of ``elope export`` with its checked metadata
    (:func:`read_session`; refused with a :class:`MetadataError` naming ``source``).

    ``run(images)`` gives the graph's outputs by name for a normalised float32 batch (B, 3, N, N), any B:
    a fixed-batch file runs in chunks (:func:`run_in_fixed_batches`)."""

    def __init__(self, session: Any, source: str) -> None:
        self.session = session
        self.metadata = read_session(session, source)
        self.input_name: str = session.get_inputs()[0].name
        self.outputs: tuple[str, ...] = self.metadata.outputs

    def run(self, images: Any) -> dict[str, Any]:
        """The outputs (numpy arrays) by name."""
        import numpy as np

        outs = run_in_fixed_batches(self._run_once, images, self.metadata.batch, np.concatenate)
        return dict(zip(self.outputs, outs))

    def _run_once(self, images: Any) -> list[Any]:
        return self.session.run(None, {self.input_name: images})
