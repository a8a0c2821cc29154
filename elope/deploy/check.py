"""Checking an exported graph against PyTorch (``elope export`` runs it after writing the file): top-1 equal,
scores within 1e-4 relative, boxes within 0.5 px where no heatmap cell lies at the threshold. An int8 file
(``elope export --quantize int8``) is checked against its float32 graph instead, on labelled test images:
top-1 agreement, accuracy of both, boxes (:func:`check_quantized`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from elope.deploy.pipeline import EMBEDDING_NAME, OnePassPipeline
from elope.deploy.runtime import ExportedModel
from elope.nn.model import ELoPE
from elope.nn.modes import evaluating

__all__ = ["MIN_AGREEMENT", "ExportCheckError", "check_export", "check_quantized", "compare_outputs"]

#: the least top-1 agreement of an int8 file with its float32 graph that :func:`check_quantized` accepts
MIN_AGREEMENT = 0.9


class ExportCheckError(RuntimeError):
    """The exported graph does not reproduce PyTorch (raised by :func:`check_export`)."""


def _margin_ok(heatmaps: Tensor, tau: float, margin: float) -> Tensor:
    """Per image: no heatmap cell lies within ``margin`` of τ after min-max normalisation, so a tiny
    numerical difference between two runtimes cannot move a cell across the threshold (and the box by a
    whole cell)."""
    maps = heatmaps.flatten(1).double()
    low, high = maps.min(dim=1, keepdim=True).values, maps.max(dim=1, keepdim=True).values
    normalised = (maps - low) / (high - low).clamp_min(1e-30)
    return ((normalised - tau).abs() > margin).all(dim=1)


def compare_outputs(
    reference: Sequence[Tensor], exported: Sequence[Tensor], *, tau: float, margin: float = 1e-4
) -> dict[str, Any]:
    """Differences between the pipeline's outputs in PyTorch and in the exported graph.

    Returns ``top1_equal`` (every image), ``scores_max_rel`` (largest |Δ| over the largest score of the
    image), ``boxes_max_px`` (largest |Δ| in pixels, over images whose heatmap has no cell within
    ``margin`` of τ: see :func:`_margin_ok`) and ``heatmaps_max_abs``.
    """
    ref_scores, ref_boxes = reference[0].detach().float(), reference[1].detach().float()
    exp_scores, exp_boxes = torch.as_tensor(exported[0]).float(), torch.as_tensor(exported[1]).float()
    scale = ref_scores.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    result: dict[str, Any] = {
        "images": int(ref_scores.shape[0]),
        "top1_equal": bool((ref_scores.argmax(dim=1) == exp_scores.argmax(dim=1)).all()),
        "scores_max_rel": float(((ref_scores - exp_scores).abs() / scale).max()),
    }
    settled = torch.ones(ref_scores.shape[0], dtype=torch.bool)
    if len(reference) > 2:
        ref_maps, exp_maps = reference[2].detach().float(), torch.as_tensor(exported[2]).float()
        result["heatmaps_max_abs"] = float((ref_maps - exp_maps).abs().max())
        settled = _margin_ok(ref_maps, tau, margin)
    result["boxes_compared"] = int(settled.sum())
    diff = (ref_boxes - exp_boxes).abs().amax(dim=1)
    result["boxes_max_px"] = float(diff[settled].max()) if bool(settled.any()) else 0.0
    return result


def check_export(
    model: ELoPE,
    path: str | Path,
    *,
    batches: Sequence[int] = (1, 3),
    scores_rtol: float = 1e-4,
    boxes_px: float = 0.5,
) -> list[dict[str, Any]]:
    """Run the exported file (onnxruntime or ``torch.jit.load``) and the model it was exported from on
    random inputs and compare (:func:`compare_outputs`); raises :class:`ExportCheckError` when their specs
    differ or the outputs differ beyond the tolerances.

    A file exported with a fixed batch is checked at that batch only; one exported with test-time
    augmentation (``tta`` in its metadata) against the eager :class:`OnePassPipeline` with the same views.
    """
    exported = ExportedModel(path)
    if exported.spec != model.spec:
        raise ExportCheckError(f"{path} was exported with {exported.spec}, the model has {model.spec}")
    size = exported.spec.crop_source
    if exported.batch is not None:
        batches = [exported.batch]
    with_embeddings = EMBEDDING_NAME in exported.outputs
    pipeline = OnePassPipeline(model, exported.tta, with_embeddings)  # the eager views the file claims
    reports = []
    with evaluating(model):
        for i, batch in enumerate(batches):
            generator = torch.Generator().manual_seed(100 + i)
            images = torch.randn(batch, 3, size, size, generator=generator)
            with torch.no_grad():
                reference = list(pipeline(images))
            got = exported.run(images)
            if with_embeddings:  # the embedding, last: relative to its largest entry
                ref_emb, emb = reference.pop(), torch.as_tensor(got.pop()).float()
                scale = ref_emb.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
                embeddings_rel = float(((ref_emb - emb).abs() / scale).max())
            report = compare_outputs(reference, got, tau=model.spec.tau)
            report["batch"] = batch
            if with_embeddings:
                report["embeddings_max_rel"] = embeddings_rel
                if not embeddings_rel <= scores_rtol * 10:
                    raise ExportCheckError(f"{path}: the exported embedding differs from PyTorch: {report}")
            reports.append(report)
            if (
                not report["top1_equal"]
                or report["scores_max_rel"] > scores_rtol
                or report["boxes_max_px"] > boxes_px
                or not math.isfinite(report["scores_max_rel"])
            ):
                raise ExportCheckError(f"{path}: the exported graph differs from PyTorch: {report}")
    return reports


def _run_chunked(model: ExportedModel, images: Tensor, chunk: int = 8) -> list[Tensor]:
    """The file's outputs on ``images``, ``chunk`` images at a time (bounded memory at large inputs)."""
    parts = [model.run(images[i : i + chunk]) for i in range(0, len(images), chunk)]
    return [torch.cat(outputs) for outputs in zip(*parts)]


def check_quantized(
    float_path: str | Path,
    int8_path: str | Path,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    min_agreement: float = MIN_AGREEMENT,
    boxes_px: float = 0.5,
) -> dict[str, Any]:
    """Run the int8 file and the float32 graph it was quantized from on ``images`` (normalised, as the graph
    takes them) and compare: ``agreement`` (share of images with the same top-1), ``accuracy_float32`` and
    ``accuracy_int8`` with ``labels`` (``accuracy_change``: int8 minus float32, in points), the largest score
    difference and ``boxes_max_px``. Raises :class:`ExportCheckError` below ``min_agreement`` or when a box
    moves by more than ``boxes_px`` (the box step stays float32: :mod:`elope.deploy.quantize`)."""
    reference = _run_chunked(ExportedModel(float_path), images)
    got = _run_chunked(ExportedModel(int8_path), images)
    ref_top, top = reference[0].argmax(dim=1), got[0].argmax(dim=1)
    report: dict[str, Any] = {
        "images": len(images),
        "agreement": float((ref_top == top).float().mean()),
        "scores_max_abs": float((reference[0] - got[0]).abs().max()),
        "boxes_max_px": float((reference[1] - got[1]).abs().max()),
    }
    if labels is not None:
        report["accuracy_float32"] = float((ref_top == labels).float().mean())
        report["accuracy_int8"] = float((top == labels).float().mean())
        report["accuracy_change"] = 100.0 * (report["accuracy_int8"] - report["accuracy_float32"])
    if report["agreement"] < min_agreement or not report["boxes_max_px"] <= boxes_px:
        raise ExportCheckError(
            f"{int8_path}: the int8 graph departs from float32 (top-1 agreement {report['agreement']:.3f}, "
            f"at least {min_agreement} wanted; boxes within {boxes_px} px): {report}. Calibrate on more "
            "images (--calibration-images) or export float32 (--quantize none)"
        )
    return report
