"""``elope export``: the one-pass pipeline of Fig. 1 as ONE graph, in ONNX or TorchScript.

The graph is the test-time path of Hanselmann & Ney (WACV 2020), Fig. 1 and Sec. 5, end to end (step by
step: ``docs/architecture.md``, "The pipeline"), from normalised images (B, 3, N, N) to a softmax, and
returns ``scores`` (B, C) softmax probabilities, ``boxes`` (B, 4) ``x1, y1, x2, y2`` in pixels of the
input and ``heatmaps`` (B, 1, h, w) (no ``heatmaps`` for a model without a localization module). It is
traced through :meth:`elope.ELoPE.crop` and the model's own modules (:class:`OnePassPipeline`), so any
change to :func:`elope.nn.localization.heatmap_to_box`, :func:`elope.nn.crop.crop_and_resize` or the
modules flows into the next export; nothing of their logic is copied here.

The input is a square batch of side N = the model's ``spec.crop_source`` (what ``elope predict`` and
``elope evaluate`` feed :meth:`elope.ELoPE.predict`; ``elope export --crop-source`` loads the run with
another). Batch 1 by default, or ``--batch dynamic``.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript-based exporter; it needs no
``onnxscript`` and its graph equals PyTorch), opset 18:

* ``roi_align`` → ONNX ``RoiAlign`` through torchvision's own registration: ``aligned=True`` is
  ``coordinate_transformation_mode="half_pixel"`` (opset ≥ 16) and ``sampling_ratio=-1`` becomes 0, which
  in ONNX is the same adaptive rule (``ceil(bin size)`` samples per bin); onnxruntime's output equals
  torchvision's bit for bit on random boxes, inside and outside the image.
* the antialiased bilinear resize (``aten::_upsample_bilinear2d_aa``, not covered by the exporter) →
  ``Resize(mode="linear", antialias=1, exclude_outside=1, coordinate_transformation_mode="half_pixel")``
  registered here (opset ≥ 18). ``exclude_outside=1`` matters: PyTorch renormalises the filter over the
  pixels inside the image; without it the results differ by up to 0.13, with it by 3e-6. When the input
  side is fixed in the graph (always, in the pipeline) the same filter is written as two ``MatMul``\\ s with
  constant weights instead when it shrinks by 10 or more, 4.5× faster in onnxruntime at 896 → 64 px and
  no faster at 448 → 64 (:mod:`elope.deploy.onnx_ops`).
* while tracing for ONNX, ``roi_align`` with more than one sample per output pixel (input side N above the
  crop size) and the ``peak`` box rule's region growing are traced through faster equivalent forms
  (:func:`elope.deploy.onnx_ops.onnx_substitutes`: two gathers; a transitive closure); the check against
  PyTorch below covers them like everything else.

Everything ``elope predict --model`` needs travels in the file: the class names and the model's spec (the
normalisation mean and std, the input side N = its crop source, τ fixed in the graph, the classifier side,
the box rule...), once — as
the ONNX ``metadata_props`` entry ``"elope"`` or the TorchScript extra file ``"elope.json"`` (one JSON
object, :func:`export_metadata`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from elope import writer
from elope.deploy import onnx_ops
from elope.deploy.formats import FORMATS, OPSET
from elope.deploy.onnx_ops import onnx_substitutes, resize_as_matmuls
from elope.deploy.pipeline import EMBEDDING_NAME, INPUT_NAME, METADATA_KEY, OnePassPipeline, TracingQuiet
from elope.exported import FORMAT_NAME, FORMAT_VERSION
from elope.nn.model import ELoPE
from elope.nn.modes import evaluating
from elope.nn.tta import check_tta

__all__ = [
    "FORMATS",
    "OPSET",
    "export_metadata",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "max_opset",
    "register_onnx_symbolics",
    "save_onnx",
]

# onnxruntime 1.32, 2 threads: antialiased Resize 896 -> 64 px 9.5 ms, as MatMuls 2.1 ms; 448 -> 64 px 0.42 ms
# against 0.49 ms (and slower at batch 8): MatMuls from a shrink by 10 on
MATMUL_RESIZE_FROM = 10.0


# --------------------------------------------------------------------------------------------- ONNX ops
def _upsample_bilinear2d_aa(
    g: Any, input: Any, output_size: Any, align_corners: Any, scale_factors: Any
) -> Any:
    """ONNX symbolic of ``F.interpolate(mode="bilinear", antialias=True)`` with a fixed output size: two
    ``MatMul``\\ s with the filter's constant weights when the input size is fixed too and the resize shrinks
    by ``MATMUL_RESIZE_FROM`` or more (:func:`elope.deploy.onnx_ops.resize_as_matmuls`), else ``Resize``."""
    from torch.onnx import symbolic_helper as sh

    size = sh._maybe_get_const(output_size, "is")
    if size is None or sh._is_value(size) or sh._maybe_get_const(align_corners, "b"):
        raise torch.onnx.errors.SymbolicValueError(
            "elope.deploy.export: only antialiased bilinear resizes to a constant size with align_corners=False "
            "are exportable",
            input,
        )
    dims = sh._get_tensor_sizes(input) or []
    fixed = len(dims) == 4 and all(isinstance(d, int) for d in dims[2:])
    if fixed and onnx_ops.FAST_FORMS and min(d / s for d, s in zip(dims[2:], size)) >= MATMUL_RESIZE_FROM:
        return resize_as_matmuls(g, input, dims[2:], list(size))  # N fixed in the graph, a large shrink
    shape = g.op("Shape", input)
    batch_channels = g.op(
        "Slice",
        shape,
        g.op("Constant", value_t=torch.tensor([0])),
        g.op("Constant", value_t=torch.tensor([2])),
    )
    sizes = g.op(
        "Concat",
        batch_channels,
        g.op("Constant", value_t=torch.tensor(list(size), dtype=torch.int64)),
        axis_i=0,
    )
    empty = sh._optional_input_placeholder_tensor
    return g.op(
        "Resize",
        input,
        empty(g),
        empty(g),
        sizes,
        mode_s="linear",
        antialias_i=1,
        exclude_outside_i=1,
        coordinate_transformation_mode_s="half_pixel",
    )


def register_onnx_symbolics(opset: int = OPSET) -> None:
    """Register the ONNX symbolics the pipeline needs with the TorchScript-based exporter (idempotent).

    ``torchvision::roi_align`` is registered by torchvision itself on import.
    """
    import torchvision  # noqa: F401  (registers roi_align's symbolic)

    if opset < OPSET:
        raise ValueError(f"the pipeline needs ONNX opset >= {OPSET} (Resize with antialias), got {opset}")
    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _upsample_bilinear2d_aa, OPSET)


# ----------------------------------------------------------------------------------------------- export
def export_metadata(
    model: ELoPE,
    *,
    classes: Sequence[str],
    batch: int | None,
    fmt: str,
    opset: int | None = None,
    extra: dict[str, Any] | None = None,
    tta: str | None = None,
    embeddings: bool = False,
) -> dict[str, Any]:
    """The JSON object stored in the exported file: what running it needs, without this package.

    Format version :data:`elope.exported.FORMAT_VERSION`. The model's spec appears once, under ``spec``
    (:meth:`elope.spec.ModelSpec.to_dict`, as in ``model.json``; the graph's input side N is its
    ``crop_source``, the normalisation its ``mean`` and ``std``: what ``elope serve`` and the plain
    onnxruntime code of docs/usage.md read); ``model`` holds the architecture (:attr:`elope.ELoPE.config`).
    ``tta``: the test-time augmentation baked into the graph (``null``: none; :mod:`elope.nn.tta`).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        elope_version = version("elope")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        elope_version = "unknown"
    has_heatmaps = model.localizer is not None
    side = model.spec.crop_source
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "exported_as": fmt,
        "classes": [str(c) for c in classes],
        "spec": model.spec.to_dict(),
        "batch": "dynamic" if batch is None else int(batch),
        "input": f"{INPUT_NAME}: float32 (B, 3, {side}, {side}), RGB in [0, 1] minus mean, over std",
        "outputs": OnePassPipeline(model, tta, embeddings).output_names(),
        "output_meaning": {
            "scores": "(B, C) softmax probabilities, class index i is classes[i]"
            + ("" if tta is None else f", averaged over the {tta} views of the crop"),
            "boxes": "(B, 4) x1, y1, x2, y2 in pixels of the input",
            **({"heatmaps": "(B, 1, h, w) heatmap of the localization module"} if has_heatmaps else {}),
            **(
                {EMBEDDING_NAME: "(B, dim) raw embedding of the crop (l2-normalise for retrieval)"}
                if embeddings
                else {}
            ),
        },
        "model": dict(model.config),
        "tta": tta,
        "elope_version": elope_version,
        "torch_version": torch.__version__,
    }
    if opset is not None:
        meta["opset"] = int(opset)
    meta.update(extra or {})
    return meta


def _example(batch: int | None, input_size: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch or 2, 3, input_size, input_size, generator=generator)


def export_onnx(
    model: ELoPE,
    path: str | Path,
    metadata: dict[str, Any],
    *,
    batch: int | None = 1,
    opset: int = OPSET,
    tta: str | None = None,
    embeddings: bool = False,
) -> Path:
    """Write the pipeline of ``model`` (on the CPU, float32) as an ONNX file with ``metadata`` attached;
    the input side is the model's ``spec.crop_source``.

    ``batch=None`` makes the batch dimension dynamic (named ``batch``); ``tta`` bakes the test-time
    augmentation into the graph (:class:`OnePassPipeline`).
    """
    import onnx

    register_onnx_symbolics(opset)
    path = Path(path)
    pipeline = OnePassPipeline(model, tta, embeddings)
    names = pipeline.output_names()
    dynamic_axes = None if batch else {name: {0: "batch"} for name in [INPUT_NAME, *names]}
    with writer.write_with(path) as tmp:  # a kill mid-export leaves the old file, never half a new one
        with evaluating(model), torch.no_grad(), TracingQuiet(), onnx_substitutes():
            torch.onnx.export(
                pipeline,
                (_example(batch, model.spec.crop_source),),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        stamp_onnx(proto, metadata)
        onnx.save(proto, str(tmp))
    return Path(path)


def stamp_onnx(proto: Any, metadata: dict[str, Any]) -> None:
    """Give the ONNX model ``proto`` ``metadata`` as its only ``"elope"`` entry (an entry it carried is
    replaced) and the pipeline's doc string, then run ``onnx.checker``: every exported ONNX file (float32
    by :func:`export_onnx`, int8 by :func:`save_onnx`) is stamped here."""
    import onnx

    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, json.dumps(metadata))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "ELoPE one-pass pipeline (Hanselmann & Ney, WACV 2020, Fig. 1), exported by elope"
    onnx.checker.check_model(proto)


def save_onnx(proto: Any, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the ONNX model ``proto`` (the int8 graph of :func:`elope.deploy.quantize.quantize_int8`) to
    ``path``, stamped with ``metadata`` (:func:`stamp_onnx`), through the writer (atomic)."""
    import onnx

    stamp_onnx(proto, metadata)
    with writer.write_with(path) as tmp:
        onnx.save(proto, str(tmp))
    return Path(path)


class _GuardWithHeatmaps(nn.Module):
    """Scripted front of the traced pipeline: refuses inputs of another size (the trace fixed it)."""

    def __init__(self, pipeline: nn.Module, size: int, batch: int) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.size = size
        self.batch = batch  # 0: any batch size

    def check(self, images: Tensor) -> None:
        """Refuse a batch of another shape than the one the file was exported for."""
        if (
            images.dim() != 4
            or images.shape[1] != 3
            or images.shape[2] != self.size
            or images.shape[3] != self.size
        ):
            raise RuntimeError(f"expected normalised images (B, 3, {self.size}, {self.size})")
        if self.batch > 0 and images.shape[0] != self.batch:
            raise RuntimeError(f"this file was exported for batch {self.batch}")

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.check(images)
        return self.pipeline(images)


class _GuardWithoutHeatmaps(_GuardWithHeatmaps):
    """:class:`_GuardWithHeatmaps` for a model without a localization module (scores and boxes only:
    TorchScript needs the output tuple's length in the signature)."""

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        self.check(images)
        return self.pipeline(images)


def export_torchscript(
    model: ELoPE, path: str | Path, metadata: dict[str, Any], *, batch: int | None = 1, tta: str | None = None
) -> Path:
    """Write the pipeline of ``model`` as a TorchScript file (``torch.jit.trace``) with ``metadata``.

    Loading it needs ``torch`` and ``torchvision`` (for the ``torchvision::roi_align`` operator: ``import
    torchvision`` in Python, libtorchvision in C++), not this package.
    """
    path = Path(path)
    pipeline = OnePassPipeline(model, tta)
    side = model.spec.crop_source
    with evaluating(model), torch.no_grad(), TracingQuiet():
        traced = torch.jit.trace(pipeline, (_example(batch, side),), check_trace=False)
    guard = (_GuardWithHeatmaps if pipeline.has_heatmaps else _GuardWithoutHeatmaps)(
        traced, side, int(batch or 0)
    )
    with TracingQuiet(), writer.write_with(path) as tmp:
        scripted = torch.jit.script(guard)
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_KEY + ".json": json.dumps(metadata)})
    return path


def max_opset() -> int:
    """The newest opset the TorchScript-based exporter of this PyTorch writes (what ``export_onnx`` uses;
    ``elope export --opset``'s upper bound)."""
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET

        return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except ImportError:  # a PyTorch that moved it: a bound past today's opsets (23), the exporter says more
        return 30


def export_model(
    model: ELoPE,
    path: str | Path,
    *,
    fmt: str = "onnx",
    classes: Sequence[str],
    batch: int | None = 1,
    opset: int = OPSET,
    extra: dict[str, Any] | None = None,
    tta: str | None = None,
    embeddings: bool = False,
) -> Path:
    """Export the one-pass pipeline of ``model`` as ``fmt`` (``onnx`` or ``torchscript``) to ``path``, at
    the model's spec (input side ``spec.crop_source``, τ, normalisation in the metadata).

    The graph is traced on the CPU in float32 (from a copy when the model is elsewhere); the model's
    train/eval modes are restored afterwards.
    ``batch=None``: dynamic batch. ``tta``: the scores averaged over views of the crop, in the graph
    (:mod:`elope.nn.tta`; recorded as ``tta`` in the metadata). ``embeddings``: the graph also returns the
    embedding (ONNX only). Returns the path written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be positive or None (dynamic), got {batch}")
    if fmt == "onnx" and not OPSET <= opset <= max_opset():
        raise ValueError(f"--opset {opset}: this PyTorch exports opsets {OPSET}..{max_opset()}")
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).cpu().float()  # the caller's model stays where it is
    check_tta(tta)
    if embeddings and fmt != "onnx":
        raise ValueError("the embedding output is exported to ONNX only: use --format onnx")
    options = {"classes": classes, "batch": batch, "fmt": fmt, "extra": extra, "tta": tta}
    if fmt == "onnx":
        meta = export_metadata(model, **options, opset=opset, embeddings=embeddings)
        return export_onnx(model, path, meta, batch=batch, opset=opset, tta=tta, embeddings=embeddings)
    return export_torchscript(model, path, export_metadata(model, **options), batch=batch, tta=tta)
