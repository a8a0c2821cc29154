"""What ``elope export`` can write, without importing torch (so that ``elope export --help`` stays fast):
the file formats and the range of ONNX opsets (:mod:`elope.deploy.export`)."""

from __future__ import annotations

__all__ = ["FORMATS", "MAX_OPSET", "OPSET"]

FORMATS = ("onnx", "torchscript")
OPSET = 18  # Resize with antialias needs 18; RoiAlign with half_pixel needs 16
#: ``elope export --opset``'s upper bound: the newest ONNX opset when this was written (onnx 1.23). The
#: exporter of the installed PyTorch may write fewer (``elope.deploy.export.max_opset``; PyTorch 2.14: 20),
#: which export reports.
MAX_OPSET = 28
