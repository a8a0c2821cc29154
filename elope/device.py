"""Devices by name: ``auto`` resolved in one place (:func:`auto_device`, also for ``train.device``), and
the device of ``evaluate``, ``predict`` and ``export``, checked before a model is loaded.

``torch.device("cuda")`` is accepted on a machine without a GPU and fails later with a traceback;
``meta`` holds shapes and no data. :func:`inference_device` says so in one line instead.
"""

from __future__ import annotations

import torch

__all__ = ["DeviceError", "auto_device", "inference_device"]

_CHOICES = "cpu, cuda, cuda:N, mps or auto"


class DeviceError(ValueError):
    """``--device`` names a device that is unknown or not on this machine."""


def auto_device(name: str) -> str:
    """``auto`` → ``cuda`` when CUDA is available, else ``cpu``; any other name as given."""
    if name.strip().lower() == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def inference_device(name: str | torch.device) -> torch.device:
    """``name`` as a ``torch.device`` this machine has (``auto``: the GPU when there is one, else the CPU).

    Raises:
        DeviceError: unknown name, CUDA or MPS not available (or no such GPU index), or ``meta``.
    """
    if isinstance(name, str):
        name = auto_device(name)
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"--device {str(name)[:40]} is not a device: use {_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0..{count - 1}"
            )
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(
                f"--device {device}: MPS (Apple GPU) is not available on this machine; use --device cpu"
            )
        return device
    if device.type == "meta":
        raise DeviceError(
            "--device meta holds tensor shapes but no data: it cannot run a model; use cpu or cuda"
        )
    raise DeviceError(f"--device {device}: elope runs on {_CHOICES}, not {device.type}")
