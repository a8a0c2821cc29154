"""What ``elope export`` can write, without importing torch (so that ``elope export --help`` stays fast):
the file formats and the lowest ONNX opset the one-pass graph needs (:mod:`elope.deploy.export`)."""

from __future__ import annotations

__all__ = ["FORMATS", "OPSET"]

FORMATS = ("onnx", "torchscript")
OPSET = 18  # Resize with antialias needs 18; RoiAlign with half_pixel needs 16
