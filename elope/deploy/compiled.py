"""``torch.compile`` over the one-pass pipeline: ``elope predict --compile`` / ``elope evaluate --compile``.

The test-time path of Fig. 1 (``docs/architecture.md``, "The pipeline") costs 0.4 % more MACs than the plain network, but on a GPU
it is ~50 small kernels more, and at batch 32-128 ``predict`` ran at 1.23-1.27× a plain ResNet-50 on an
H200 (``docs/results.md``). :func:`compile_model` returns a copy whose batch norms are folded into the
convolutions (:mod:`elope.deploy.fuse`) and whose

* ``predict`` runs :class:`elope.deploy.export.OnePassPipeline` (the same module ``elope export`` writes out:
  crop + classifier + softmax) as ONE compiled region, then the top-k;
* ``crop`` and ``forward`` are compiled on their own, for callers that use them apart
  (``elope evaluate``'s batch runner, which also needs the embeddings; the example sheet).

Inductor fuses the element-wise kernels (``heatmap_to_box``'s ~30, the pooling, the softmax), and
``mode="reduce-overhead"`` replays each region as a CUDA graph: one launch instead of dozens. With CUDA
graphs a replay's outputs live in a pool the next replay overwrites, so the compiled callables start a new
CUDA-graph step and return copies (:func:`compile_module` does the same for a plain network, so that a
benchmark compiles both alike).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from elope.deploy.fuse import fold_batch_norms, fold_model
from elope.deploy.pipeline import OnePassPipeline
from elope.nn.model import Prediction

__all__ = ["COMPILE_MODES", "compile_model", "compile_module"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")

M = TypeVar("M", bound=nn.Module)


def _options(mode: str, backend: str, dynamic: bool | None) -> dict[str, Any]:
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {COMPILE_MODES}")
    options: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    if backend == "inductor":
        options["mode"] = mode
    return options


def _copying(fn: Callable[..., Any], mode: str, backend: str) -> Callable[..., Any]:
    """``fn`` as is, or (CUDA-graph modes) called as a new CUDA-graph step and returning copies."""
    if backend != "inductor" or mode not in _CUDAGRAPH_MODES:
        return fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        out = fn(*args, **kwargs)
        return tree_map(lambda t: t.clone() if isinstance(t, Tensor) else t, out)

    return call


def compile_module(
    module: nn.Module,
    mode: str = "default",
    *,
    backend: str = "inductor",
    fold: bool = True,
    dynamic: bool | None = None,
) -> Callable[..., Any]:
    """Any network for inference compiled like :func:`compile_model` compiles ELoPE: an eval copy,
    batch norms folded, ``torch.compile``'d, outputs copied under CUDA graphs. Returns a callable."""
    options = _options(mode, backend, dynamic)
    net = fold_batch_norms(module) if fold else copy.deepcopy(module).eval()
    return _copying(torch.compile(net, **options), mode, backend)


def compile_model(
    model: M,
    mode: str = "default",
    *,
    backend: str = "inductor",
    fold: bool = True,
    dynamic: bool | None = None,
) -> M:
    """An eval-mode copy of an :class:`elope.ELoPE` whose ``predict``, ``crop`` and ``forward`` are compiled.

    Args:
        model: the model (left untouched).
        mode: ``torch.compile`` mode (:data:`COMPILE_MODES`); ``reduce-overhead`` uses CUDA graphs.
        backend: ``inductor`` (needs a C++ compiler on the CPU, Triton on a GPU), or e.g. ``aot_eager``
            (no code generation: for tests); ``mode`` applies to inductor only.
        fold: fold batch norms into convolutions first (:func:`elope.deploy.fuse.fold_model`).
        dynamic: ``torch.compile``'s ``dynamic`` (None: recompile once for a new shape, then dynamic;
            False: one static graph per input shape, best with CUDA graphs).

    For inference only. ``copy.predict(images)`` equals ``model.predict(images)`` up to float rounding
    (``tests/test_deploy_compiled.py``). Compilation happens on the first call with each new input shape.
    """
    options = _options(mode, backend, dynamic)
    fast = fold_model(model) if fold else copy.deepcopy(model).eval()
    view = copy.copy(fast)  # the same modules and weights, without the compiled attributes set below
    one_pass = _copying(torch.compile(OnePassPipeline(view), **options), mode, backend)
    crop = _copying(torch.compile(view.crop, **options), mode, backend)
    forward = _copying(torch.compile(view.forward, **options), mode, backend)
    # instance attributes shadow the methods: model.predict(x), model.crop(x) and model(x) run compiled
    fast.crop = crop
    fast.forward = forward
    fast.predict = functools.partial(_predict, fast, one_pass)
    fast.compile_mode = f"{backend}:{mode}"
    return fast


def _predict(model: Any, one_pass: Callable[..., Any], images: Any, top: int = 1) -> Any:
    """:meth:`elope.ELoPE.predict` through the compiled one-pass region (the pipeline, then the top-k), at
    the spec the model had when it was compiled."""
    if isinstance(images, (list, tuple)):  # images of different sizes: each on its own, as predict does
        return type(model).predict(model, images, top=top)
    with torch.no_grad():
        outputs = one_pass(images)
    scores, classes = outputs[0].topk(min(top, model.num_classes), dim=1)
    return Prediction(classes, scores, outputs[1], outputs[2] if len(outputs) > 2 else None)
