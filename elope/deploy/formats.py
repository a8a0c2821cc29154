"""What ``elope export`` can write, without importing torch (so that ``elope export --help`` stays fast):
the file formats, the range of ONNX opsets (:mod:`elope.deploy.export`) and the quantizations
(:mod:`elope.deploy.quantize`)."""

from __future__ import annotations

__all__ = ["CALIBRATION_IMAGES", "FORMATS", "MAX_CALIBRATION_IMAGES", "MAX_OPSET", "OPSET", "QUANTIZATIONS"]

FORMATS = ("onnx", "torchscript")
OPSET = 18  # Resize with antialias needs 18; RoiAlign with half_pixel needs 16
#: ``elope export --opset``'s upper bound: the newest ONNX opset when this was written (onnx 1.23). The
#: exporter of the installed PyTorch may write fewer (``elope.deploy.export.max_opset``; PyTorch 2.14: 20),
#: which export reports.
MAX_OPSET = 28

#: ``elope export --quantize``: none (float32), or int8 (onnxruntime static quantization, ONNX only)
QUANTIZATIONS = ("none", "int8")
#: ``elope export --calibration-images``: training images the int8 quantizer calibrates on (default, bound)
CALIBRATION_IMAGES = 64
MAX_CALIBRATION_IMAGES = 4096
