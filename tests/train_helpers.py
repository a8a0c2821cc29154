"""Shared by the tests/test_train_*.py files: a tiny data set and the arguments of a tiny run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file


def write_tiny_synthetic(folder: Path) -> Path:
    """3 classes × 6 training images (→ 15 train, 3 val) and 2 test images each, 64 px."""
    from elope.data.synthetic import write_synthetic

    return write_synthetic(folder, classes=3, train=6, test=2, size=64, seed=0)


def tiny_args(root: Path, out: Path, *extra: str, epochs: int = 1) -> list[str]:
    """``elope train`` on ResNet-18 at 64 px, batch 4 (3 steps per epoch), a small embedding."""
    return [
        "train", "--dataset", "synthetic", "--root", str(root), "--out", str(out),
        "--backbone", "resnet18", "--no-pretrained", "--image-size", "64", "--batch-size", "4",
        "--epochs", str(epochs), "--num-workers", "0",
        "--set", "model.embedding_dim=32", "--set", "train.progress=false",
        # the tiny recipe keeps a validation split and model selection, and the old demo's settings
        "--set", "dataset.val_fraction=0.1", "--set", "train.select=best", "--set", "dataset.crop_source=null",
        "--set", "train.channels_last=false", "--set", "train.checkpoint_every_steps=50",
        "--set", "dataset.augment={rotation: 0.0, jitter: 0.1, lighting: 0.0}",
        "--set", "model.tau=0.3", "--set", "model.tau_select=fixed", "--set", "model.heatmap_upsample=false",
        *extra,
    ]  # fmt: skip


KILL_AT_STEP = Path(__file__).with_name("kill_at_step.py")


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 300, *, kill_at: str | None = None
) -> subprocess.CompletedProcess:
    """``python -m elope.cli ARGS`` in a fresh process with one CPU thread (reproducible timings aside).

    ``kill_at="stage:epoch:step"`` runs it through ``tests/kill_at_step.py``, which SIGKILLs the process
    right after that training step (the exact-resume tests).
    """
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    command = ["-m", "elope.cli"] if kill_at is None else [str(KILL_AT_STEP), kill_at]
    return subprocess.run(
        [sys.executable, *command, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


T = TypeVar("T")


def side_by_side(*calls: Callable[[], T]) -> list[T]:
    """Each call in its own thread, their results in order: independent runs of :func:`run_cli` (one CPU
    thread each) then take the machine's cores together instead of one after another."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Weights of RUN/model and the class means, by name."""
    tensors = dict(load_file(str(run / "model" / "model.safetensors")))
    means = run / "model" / "class_means.safetensors"
    if means.is_file():
        tensors["class_means"] = load_file(str(means))["means"]
    return tensors
