"""``torch.compile`` over the one-pass pipeline: ``elope predict --compile`` / ``elope evaluate --compile``.

The test-time path of Fig. 1 (Sec. 5: resize to 64 px, localization module, heatmap → box, ``roi_align``
crop, backbone, GKMP, embedding, classifier) costs 0.4 % more MACs than the plain network, but on a GPU
it is ~50 small kernels more, and at batch 32-128 ``predict`` ran at 1.23-1.27× a plain ResNet-50 on an
H200 (``docs/results.md``). :func:`compile_model` returns a copy whose localizer (and backbone) batch norms
are folded (:mod:`elope.fuse`) and whose :meth:`~elope.ELoPE.crop` (localize, box, crop) and ``forward``
(classifier) are compiled: inductor fuses the element-wise kernels of ``heatmap_to_box`` and the pooling,
and ``mode="reduce-overhead"`` replays each part as a CUDA graph (one launch instead of dozens).
:meth:`~elope.ELoPE.predict`, ``elope evaluate`` and the example sheet call those two methods, so they all
run compiled without further changes.

With CUDA graphs the outputs of a replay live in a pool the next replay overwrites; the compiled methods
return copies (a few hundred KiB per batch, plus the crops), so callers may keep them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils._pytree import tree_map

from elope.fuse import fold_model

__all__ = ["COMPILE_MODES", "compile_model"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")

M = TypeVar("M", bound=nn.Module)


def _copying(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Call ``fn`` as a new CUDA-graph step and return copies of its tensor outputs."""

    def call(*args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        out = fn(*args, **kwargs)
        return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)

    return call


def compile_model(
    model: M,
    mode: str = "default",
    *,
    backend: str = "inductor",
    fold: bool = True,
    dynamic: bool | None = None,
) -> M:
    """An eval-mode copy of an :class:`elope.ELoPE` with ``crop`` and ``forward`` compiled.

    Args:
        model: the model (left untouched).
        mode: ``torch.compile`` mode (:data:`COMPILE_MODES`); ``reduce-overhead`` uses CUDA graphs.
        backend: ``inductor`` (needs a C++ compiler on the CPU, Triton on a GPU), or e.g. ``aot_eager``
            (no code generation: for tests); ``mode`` applies to inductor only.
        fold: fold batch norms into convolutions first (:func:`elope.fuse.fold_model`).
        dynamic: ``torch.compile``'s ``dynamic`` (None: recompile once per new shape, then dynamic).

    For inference only: the copy's batch norms may be folded and its methods are compiled for eval mode.
    ``copy.predict(images)`` equals ``model.predict(images)`` up to float rounding.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {COMPILE_MODES}")
    fast = fold_model(model) if fold else _eval_copy(model)
    options: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    if backend == "inductor":
        options["mode"] = mode
    crop = torch.compile(fast.crop, **options)
    forward = torch.compile(fast.forward, **options)
    if backend == "inductor" and mode in _CUDAGRAPH_MODES:
        crop, forward = _copying(crop), _copying(forward)
    # instance attributes shadow the methods: predict(), evaluate's run_batch and model(x) now call these
    fast.crop = crop
    fast.forward = forward
    fast.compile_mode = f"{backend}:{mode}"
    return fast


def _eval_copy(model: M) -> M:
    import copy

    return copy.deepcopy(model).eval()
