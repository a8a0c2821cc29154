"""What both GPU benchmarks (:mod:`benchmarks.gpu`, eager, and :mod:`benchmarks.gpu_compiled`) set up and
measure the same way: the device and the two seeded networks, a timed block of repeated calls, peak memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import bench_device
from elope.nn.backbones import TORCHVISION_BACKBONES
from elope.nn.model import ELoPE
from elope.spec import ModelSpec

__all__ = ["peak_memory", "repeat", "setting"]


def repeat(fn: Callable[[], Any], steps: int) -> Callable[[], None]:
    """``fn`` called ``steps`` times: one timed block."""

    def block() -> None:
        for _ in range(steps):
            fn()

    return block


def peak_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, float] | None:
    """Peak allocated memory (MiB) over two calls of ``fn`` run alone; None off CUDA."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mb": peak / 2**20, "delta_mb": (peak - before) / 2**20}


def setting(device: str, backbone: str, num_classes: int, image_size: int, channels_last: bool) -> tuple:
    """The device, memory format, seeded ELoPE and plain network of a GPU benchmark (cuDNN autotuned)."""
    dev = bench_device(device, "gpu.py")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = ELoPE(backbone, num_classes, spec=ModelSpec(image_size=image_size)).to(
        dev, memory_format=memory_format
    )
    baseline = TORCHVISION_BACKBONES[backbone](num_classes=num_classes).to(dev, memory_format=memory_format)
    return dev, memory_format, model, baseline
