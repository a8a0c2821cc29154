"""Train / eval mode for a block: :func:`evaluating`, the one place a mode is saved and restored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["evaluating"]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; the train/eval mode of every submodule restored after (a
    localization module frozen in eval mode during training stays so, a trained part goes back to
    training)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
