"""Two CPU processes (torchrun, gloo) train like one process on the same global batch.

Each process takes half of every global batch (``elope.engine.sampling.EpochSampler``); the class-mean loss
gathers the embeddings and labels of both halves, so the means are updated from the global batch on
every process (training checks at each checkpoint that they are identical everywhere, bit for bit), and
the gradient scaling of ``elope.engine.distributed`` makes the DDP average equal the one-process gradient.

``train.freeze_bn=true``: batch normalisation in training mode normalises with the statistics of the
*local* half batch, which differ from those of the global batch, so the two runs would legitimately
differ. With BN layers in eval mode (SyncBatchNorm needs CUDA) the forward pass of each sample no longer
depends on the rest of the batch and the comparison is exact up to floating point: the halves' gradients
are summed in another order and convolutions run with another batch size, hence a tolerance of 1e-5
(observed: ~1e-7, weights of order 0.1) rather than bitwise equality. Few steps: this randomly
initialised network without batch statistics is so ill-conditioned that such 1e-7 differences grow about
tenfold per step after the third (measured).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from train_helpers import run_cli, side_by_side, tiny_args, write_tiny_synthetic

from elope.engine.sampling import seed_everything
from elope.nn.losses import ClassMeanLoss
from elope.nn.model import ELoPE
from elope.spec import ModelSpec

# one epoch = 3 steps of a global batch of 4 (2 per process)
ARGS = ("--stages", "classifier", "--set", "train.freeze_bn=true", "--set", "train.select=last",
        "--set", "stages.classifier.lr=0.01")  # fmt: skip


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    data = write_tiny_synthetic(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "elope.cli", *tiny_args(data, tmp_path / "two", *ARGS)]  # fmt: skip
    single, two = side_by_side(
        lambda: run_cli(tiny_args(data, tmp_path / "one", *ARGS)),
        lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300),
    )
    assert single.returncode == 0, single.stderr
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stderr

    a = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert a["world_size"] == 1 and b["world_size"] == 2
    torch.testing.assert_close(b["criterion"]["means"], a["criterion"]["means"], rtol=0, atol=1e-5)
    for key, value in a["model"].items():
        torch.testing.assert_close(
            b["model"][key], value, rtol=0, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}"
        )

    # the comparison means something: training moved weights and means 100 times the tolerance and more
    seed_everything(0)  # what build_run does before building the model and the loss
    model = ELoPE(
        "resnet18", 3, embedding_dim=32, localizer=False, spec=ModelSpec(image_size=64, tau=0.3)
    )  # its head: forked
    means = ClassMeanLoss(3, 32).means
    assert (a["model"]["classifier.weight"] - model.classifier.weight).abs().max() > 1e-3
    assert (a["criterion"]["means"] - means).abs().max() > 1e-3
