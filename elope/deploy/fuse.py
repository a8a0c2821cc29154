"""Batch-norm folding for inference: convolution + batch norm → one convolution.

In eval mode a batch norm is an affine map per channel, so it folds into the convolution before it
(w' = w·γ/σ, b' = (b − μ)·γ/σ + β). On a GPU the localization module of Sec. 5 (the backbone's stem and
first stage at 64×64, Fig. 1) is launch-bound: its batch norms are separate small kernels, 1.06 ms of a
ResNet-50 ``predict`` at batch 32 on an H200 for 0.4 % of the MACs (``docs/results.md``). Folding removes
them; the result equals the unfolded module in eval mode up to float rounding (``tests/test_deploy_fuse.py``).

Only pairs whose order is certain are folded: consecutive ``Conv2d`` → ``BatchNorm2d`` children of an
``nn.Sequential`` (the ResNet stem as built by :mod:`elope.nn.backbones`, residual ``downsample`` branches)
and ``conv{i}`` → ``bn{i}`` of torchvision's ``BasicBlock`` / ``Bottleneck``. Anything else (for instance
timm's fused ``BatchNormAct2d``) is left as it is, which is always correct.
"""

from __future__ import annotations

import copy
import itertools
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["fold_batch_norms", "fold_batch_norms_", "fold_model"]

M = TypeVar("M", bound=nn.Module)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def fold_batch_norms_(module: nn.Module) -> int:
    """Fold in place every certain ``Conv2d`` → ``BatchNorm2d`` pair of ``module`` (which must be in eval
    mode); each folded batch norm becomes ``nn.Identity``. Returns the number of pairs folded."""
    if any(m.training for m in module.modules()):
        raise ValueError("fold batch norms in eval mode only: call module.eval() first")
    folded = 0
    for parent in list(module.modules()):
        pairs: list[tuple[str, str]] = []
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            pairs += list(itertools.pairwise(names))
        if isinstance(parent, (BasicBlock, Bottleneck)):
            pairs += [(f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(parent, f"conv{i}")]
        for conv_name, bn_name in pairs:
            conv, bn = parent._modules.get(conv_name), parent._modules.get(bn_name)
            if conv is not None and bn is not None and _foldable(conv, bn):
                with torch.no_grad():
                    parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                parent._modules[bn_name] = nn.Identity()
                folded += 1
    return folded


def fold_batch_norms(module: M) -> M:
    """An eval-mode copy of ``module`` with its batch norms folded into the convolutions before them.

    The original is left untouched. For inference only: the copy has no batch-norm statistics to train.
    """
    folded = copy.deepcopy(module).eval()
    fold_batch_norms_(folded)
    return folded


def fold_model(model: M, *, backbone: bool = True) -> M:
    """An eval-mode copy of an :class:`elope.ELoPE` with the localization module's batch norms folded
    (Sec. 5), and the backbone's too with ``backbone=True``. For inference (``predict``, ``evaluate``)."""
    folded = copy.deepcopy(model).eval()
    localizer = getattr(folded, "localizer", None)
    if localizer is not None:
        fold_batch_norms_(localizer)
    if backbone:
        fold_batch_norms_(folded.features)
    return folded
