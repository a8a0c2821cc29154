"""``--resume`` after SIGKILL ends with exactly the weights of an uninterrupted run.

Bit-exact on the CPU because nothing in training depends on when the process started: the data order of
an epoch comes from ``seed + epoch``, each item's augmentation from ``(seed, epoch, index)``
(``elope.engine.sampling``), and the checkpoint restores model, optimizer, scheduler, class means, the best epoch
so far, the epoch's running sums and the RNG states. Both runs use one thread (same kernels, same order of
floating-point sums).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from train_helpers import final_tensors, run_cli, side_by_side, tiny_args, write_tiny_synthetic

CHECKPOINT_EVERY = "--set", "train.checkpoint_every_steps=2"


def _metrics(run: Path) -> list[dict]:
    drop = ("images_per_s", "time_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run / "metrics.jsonl").read_text().splitlines()]  # fmt: skip


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_is_bit_exact(tmp_path):
    data = write_tiny_synthetic(tmp_path / "data")
    args = (*CHECKPOINT_EVERY, "--stages", "classifier,localizer,crop")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # the cut run is killed in the crop stage after its 3rd step of epoch 1: the last checkpoint is from step 2
    done, killed = side_by_side(
        lambda: run_cli(tiny_args(data, whole, *args)),
        lambda: run_cli(tiny_args(data, cut, *args), kill_at="crop:0:3"),
    )
    assert done.returncode == 0, done.stderr
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    last = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    assert (last["stage"], last["epoch"], last["step"]) == ("crop", 0, 2)
    resumed = run_cli(["train", "--out", str(cut), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "stages to run ['crop']" in resumed.stderr

    a, b = final_tensors(whole), final_tensors(cut)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ after resume: {different[:5]}"
    assert _metrics(whole) == _metrics(cut)  # no line lost or repeated
