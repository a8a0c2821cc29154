"""Run an exported one-pass pipeline (``elope export``) with onnxruntime or ``torch.jit.load``.

The file holds the whole test-time path of Fig. 1 (Hanselmann & Ney, WACV 2020; ``docs/architecture.md``,
"The pipeline") and, as metadata, the class names, the normalisation, the input size and τ
(:func:`elope.deploy.export.export_metadata`). :class:`ExportedModel` runs it and gives the same
:class:`elope.Prediction` as :meth:`elope.ELoPE.predict`; it is a :class:`elope.evaluation.predictor.Predictor`
(its :attr:`~ExportedModel.spec` read from the metadata), so ``elope predict --model FILE`` reads, resizes
and normalises images exactly as with ``--run RUN``. Nothing here is needed to *deploy* the file: the
docs/usage.md ("Deployment") shows the ten lines of plain onnxruntime or torch code that do the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from elope.deploy.pipeline import EMBEDDING_NAME, TracingQuiet
from elope.device import inference_device
from elope.evaluation.outputs import BatchOutputs, Want
from elope.exported import (
    METADATA_KEY,
    ExportedSession,
    check_score_width,
    open_session,
    parse_metadata,
    run_in_fixed_batches,
)
from elope.nn.model import Prediction

__all__ = ["ExportedModel", "is_onnx_file", "read_metadata"]


def is_onnx_file(path: str | Path) -> bool:
    """ONNX protobuf (by suffix ``.onnx``, else not a zip archive) rather than a TorchScript archive."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    with open(path, "rb") as f:
        return f.read(2) != b"PK"  # TorchScript files are zip archives


def _onnx_providers(device: str | torch.device) -> list[Any]:
    import onnxruntime as ort

    dev = torch.device(device)
    if dev.type == "cpu":
        return ["CPUExecutionProvider"]
    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                f"onnxruntime {ort.__version__} has no CUDAExecutionProvider: install onnxruntime-gpu, or use "
                "--device cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": dev.index or 0}), "CPUExecutionProvider"]
    raise ValueError(f"device must be cpu or cuda[:N] for an exported model, got {device!r}")


def _not_exported(path: Path, fmt: str, error: BaseException) -> str:
    """What to say when ``path`` does not load as an exported graph."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    hint = {
        ".pt": "a training checkpoint or state dict (.pt) is not an exported model: pass its run with --run, "
        "or write one with `elope export`",
        ".safetensors": "model weights (.safetensors) are not an exported model: pass the run folder with "
        "--run, or write one with `elope export`",
    }.get(
        path.suffix.lower(), "it is truncated or not a file written by `elope export`; export the run again"
    )
    return f"cannot load {path} as an exported {fmt} model ({first}): {hint}"


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``elope`` metadata of an exported file, without building a session (ONNX or TorchScript), checked
    by :func:`elope.exported.parse_metadata`."""
    if is_onnx_file(path):
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        entries = {p.key: p.value for p in proto.metadata_props}
    else:  # a TorchScript archive is a zip file; its extra files are stored under <name>/extra/
        import zipfile

        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_KEY}.json")]
            entries = {METADATA_KEY: archive.read(names[0]).decode() if names else ""}
    return parse_metadata(entries.get(METADATA_KEY), str(path)).raw


class ExportedModel:
    """An exported pipeline, run with onnxruntime (``.onnx``) or ``torch.jit.load`` (TorchScript).

    Args:
        path: the file written by ``elope export``.
        device: ``cpu`` or ``cuda[:N]`` (onnxruntime needs its GPU build for CUDA).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).

    ``run(images)`` returns the graph's outputs as tensors (``scores``, ``boxes``[, ``heatmaps``]);
    ``predict(images, top)`` the :class:`elope.Prediction` of :meth:`elope.ELoPE.predict`. ``spec``: the
    τ fixed in the graph, its input side (the crop source), the classifier side and the normalisation.
    ``tta``: the test-time augmentation baked into the graph (``elope export --tta``), None without one.
    """

    def __init__(
        self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            what = "is not a regular file" if self.path.exists() else "not found"  # a FIFO would block
            raise FileNotFoundError(f"{self.path} {what}: pass a file written by `elope export`.")
        self.device = inference_device(device)
        self.format = "onnx" if is_onnx_file(self.path) else "torchscript"
        try:
            raw = self._open(threads)
        except (ImportError, ValueError):
            raise
        except Exception as error:  # onnxruntime's InvalidProtobuf, torch.jit's "PytorchStreamReader failed"
            raise ValueError(_not_exported(self.path, self.format, error)) from None
        self._read_meta(raw)

    def _open(self, threads: int | None) -> str | None:
        """Build the onnxruntime session or load the TorchScript module; returns the raw metadata."""
        self.session, self.module = None, None
        if self.format == "onnx":
            providers = _onnx_providers(self.device)
            self.session = open_session(str(self.path), providers=providers, threads=threads)
            return None  # read with the session's graph (elope.exported.ExportedSession)
        extra = {METADATA_KEY + ".json": ""}
        with TracingQuiet():  # torch.jit.load's deprecation notice
            self.module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra)
        return extra[METADATA_KEY + ".json"]

    def _read_meta(self, raw: str | None) -> None:
        """The ``elope`` metadata, checked once by :mod:`elope.exported` (the reader ``elope serve`` uses
        too): refused with one line naming the file when it is not what ``elope export`` writes or holds
        out-of-range values; for ONNX against the graph's outputs and score width."""
        self.exported = None if self.session is None else ExportedSession(self.session, str(self.path))
        meta = parse_metadata(raw, str(self.path)) if self.exported is None else self.exported.metadata
        self.metadata = meta
        self.meta: dict[str, Any] = meta.raw
        self.classes: list[str] = list(meta.classes)
        self.num_classes = len(self.classes)
        self.input_size = meta.input_size
        self.spec = meta.spec
        self.batch: int | None = meta.batch
        self.outputs: list[str] = list(meta.outputs)
        self.tta: str | None = meta.tta  # views the scores average over (elope.nn.tta)
        self._width_checked = self.session is not None  # TorchScript: checked on the first run

    def _run_script(self, images: Tensor) -> list[Tensor]:
        with torch.inference_mode():
            return list(self.module(images.to(self.device, torch.float32)))

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        """The graph's outputs for normalised images (B, 3, N, N); any B, also with a fixed-batch file."""
        images = torch.as_tensor(images)
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.input_size, self.input_size):
            raise ValueError(
                f"{self.path.name} takes normalised images (B, 3, {self.input_size}, {self.input_size}), got "
                f"{tuple(images.shape)}"
            )
        if self.exported is not None:
            array = np.ascontiguousarray(images.detach().cpu().float().numpy())
            outputs = [torch.from_numpy(np.asarray(a)) for a in self.exported.run(array).values()]
        else:
            outputs = run_in_fixed_batches(self._run_script, images, self.batch, torch.cat)
        if not self._width_checked:
            check_score_width(self.metadata, int(outputs[0].shape[1]), str(self.path))
            self._width_checked = True
        return outputs

    def predict(self, images: Tensor, top: int = 1) -> Prediction:
        """Top classes, scores, boxes and heatmaps as :meth:`elope.ELoPE.predict` gives them (at the τ fixed
        in the graph, ``spec.tau``): :meth:`predict_batch` with the ``top`` classes."""
        out = self.predict_batch(images, Want(top=top))
        return Prediction(out.top_classes, out.top_scores, out.boxes, out.heatmaps)

    def prepare(self, images: Tensor) -> Tensor:
        """A loader's batch as :meth:`run` takes it (it moves the images itself)."""
        return images.as_subclass(Tensor)

    def predict_batch(self, images: Tensor, want: Want) -> BatchOutputs:
        """What ``want`` asks of a batch, from the graph's outputs (the one-pass pipeline only: the file
        holds nothing else; ``embeddings`` from a file of ``elope export --embedding``, refused otherwise)."""
        if want.pipeline != "crops":
            raise ValueError(f"{self.path.name} holds the one-pass pipeline only, not {want.pipeline!r}")
        if want.embeddings and EMBEDDING_NAME not in self.outputs:
            raise ValueError(
                f"{self.path} has no '{EMBEDDING_NAME}' output (outputs {self.outputs}): export the run again "
                "with `elope export --embedding`"
            )
        outputs = dict(zip(self.outputs, self.run(images)))
        out = BatchOutputs(boxes=outputs["boxes"], heatmaps=outputs.get("heatmaps"))
        if want.top:
            out.top_scores, out.top_classes = outputs["scores"].topk(min(want.top, self.num_classes), dim=1)
            out.predictions = out.top_classes[:, 0]
        if want.embeddings:
            out.embeddings = outputs[EMBEDDING_NAME].float()
        return out
