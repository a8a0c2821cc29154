"""Multi-process training under ``torchrun`` (DDP), and the gathering the class-mean loss needs.

``torchrun --nproc_per_node N elope train ...`` (or several nodes with ``--nnodes``/``--rdzv-endpoint``)
sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them and starts a process
group with NCCL on GPUs and gloo on the CPU. Without those variables everything runs in one process.

Batches. ``batch_size`` in a recipe is the *global* batch; each of W processes takes ``batch_size / W``
consecutive samples of it (``elope.engine.sampling.EpochSampler``), so the recipe means the same thing on one or many
processes.

Class means (Eqs. 6-10). Every process gathers the embeddings and labels of the whole global batch, in rank
order, with :func:`all_gather_with_grad`, and computes the class-mean loss on that global batch. All
processes therefore apply the same update to the same means and keep them identical, and they equal what
one process computes on the global batch (same samples, same order). We gather rather than all-reduce
per-class sums because ``L_b`` (Eq. 10) needs the set of classes present in the global batch and the
within-class term (Eq. 9) needs each sample against its updated mean.

Gradient scaling. Let L = CE + λ L_e with CE the mean over the global batch of B samples and L_e computed
from all B embeddings e_1..e_B. In one process, dL/dθ = Σ_n (∂L/∂e_n)(∂e_n/∂θ). With W processes:

* process r computes CE_r = mean over its B/W samples; DDP *averages* parameter gradients over W
  processes, so (1/W) Σ_r dCE_r/dθ = d CE/dθ: the cross-entropy part matches.
* every process computes the same L_e on the gathered batch. The backward of ``all_gather_with_grad``
  *sums* the incoming gradients of all processes for the local slice (an all-reduce, then the slice), so
  process r receives Σ_r' ∂L_e/∂e_n = W ∂L_e/∂e_n for its own samples n. After DDP's average over W, the
  parameter gradient is (1/W) Σ_r Σ_{n in r} W (∂L_e/∂e_n)(∂e_n/∂θ) = Σ_n (∂L_e/∂e_n)(∂e_n/∂θ): the
  embedding part matches too. (A gather whose backward only kept the local gradient would be W times too
  small.) ``tests/test_train_distributed.py`` checks the result against one process.

Batch normalisation still sees only the local B/W samples unless ``sync_bn`` (SyncBatchNorm, CUDA only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from elope.device import auto_device
from elope.failures import TrainingError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Start the process group from torchrun's environment; a single process when it is absent."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate ``x`` of every process along dim 0 (rank order); backward sums over processes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Global batch of ``x`` (all processes hold equal-sized local batches); identity in one process."""
    if not info.enabled:
        return x
    return _AllGatherWithGrad.apply(x)


def all_gather_tensor(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Like :func:`all_gather_with_grad` without autograd (labels)."""
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``values`` over processes (returned, input untouched)."""
    values = values.clone()
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_tensor_(x: torch.Tensor, info: DistInfo, src: int = 0) -> None:
    if info.enabled:
        dist.broadcast(x, src=src)


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP around ``module`` (only parameters with ``requires_grad`` take part); unchanged in one process."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """SyncBatchNorm everywhere (NCCL on CUDA only: PyTorch has no CPU implementation)."""
    if device.type != "cuda":
        raise ValueError("train.sync_bn needs CUDA devices (SyncBatchNorm has no CPU implementation)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    """``train.device`` as this process's device: ``auto`` (:func:`elope.device.auto_device`) or
    ``cuda`` → the process's GPU (its local rank), ``cuda:N`` → that GPU; refused without CUDA."""
    name = auto_device(name)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else dist.local_rank
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")
