"""elope: ELoPE (Hanselmann & Ney, WACV 2020) for fine-grained visual classification in PyTorch.

Global k-max pooling (Sec. 3), an embedding layer trained with a class-mean loss (Sec. 4) and a
lightweight localization module that crops the image before the backbone sees it (Sec. 5).

The package is layered, imports running downward only (``docs/architecture.md``, checked by
``tests/test_architecture.py``): ``nn`` (the paper's parts) ← ``data`` ← ``evaluation`` (the one loop
over a dataset, the metrics) ← ``deploy`` ← ``runs`` (the run folder) ← ``engine`` (the training recipe) ←
``tasks`` (evaluate, predict, ablate, ...) ← ``commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from elope.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and editors
    from elope.nn.backbones import available_backbones, build_backbone
    from elope.nn.crop import crop_and_resize, resize
    from elope.nn.embedding import EmbeddingHead
    from elope.nn.localization import LocalizationModule, heatmap_loss, heatmap_to_box, mean_heatmap
    from elope.nn.losses import (
        LOSS_VARIANTS,
        CenterLoss,
        ClassMeanLoss,
        DFFLoss,
        EmbeddingLoss,
        WithinClassLoss,
        class_mean_loss,
        update_class_means,
    )
    from elope.nn.model import POOLINGS, ELoPE, Prediction, create_model
    from elope.nn.pooling import GlobalAvgPool2d, GlobalKMaxPool2d, global_kmax_pool
    from elope.nn.weights import WeightsError, load_weights
    from elope.runs.model_folder import load_model, save_model
    from elope.spec import ModelSpec

# Imported on first use (PEP 562), so that `import elope.serve` and `elope serve --model` stay free of
# torch: onnxruntime, numpy and Pillow are all a served ONNX file needs.
_LAZY: dict[str, str] = {
    "CenterLoss": "elope.nn.losses",
    "ClassMeanLoss": "elope.nn.losses",
    "DFFLoss": "elope.nn.losses",
    "ELoPE": "elope.nn.model",
    "EmbeddingLoss": "elope.nn.losses",
    "EmbeddingHead": "elope.nn.embedding",
    "GlobalAvgPool2d": "elope.nn.pooling",
    "GlobalKMaxPool2d": "elope.nn.pooling",
    "LOSS_VARIANTS": "elope.nn.losses",
    "LocalizationModule": "elope.nn.localization",
    "ModelSpec": "elope.spec",
    "POOLINGS": "elope.nn.model",
    "Prediction": "elope.nn.model",
    "WeightsError": "elope.nn.weights",
    "WithinClassLoss": "elope.nn.losses",
    "available_backbones": "elope.nn.backbones",
    "build_backbone": "elope.nn.backbones",
    "class_mean_loss": "elope.nn.losses",
    "create_model": "elope.nn.model",
    "crop_and_resize": "elope.nn.crop",
    "global_kmax_pool": "elope.nn.pooling",
    "heatmap_loss": "elope.nn.localization",
    "heatmap_to_box": "elope.nn.localization",
    "load_model": "elope.runs.model_folder",
    "load_weights": "elope.nn.weights",
    "mean_heatmap": "elope.nn.localization",
    "resize": "elope.nn.crop",
    "save_model": "elope.runs.model_folder",
    "update_class_means": "elope.nn.losses",
}

__version__ = "0.1.0"

__all__ = [
    "LOSS_VARIANTS",
    "POOLINGS",
    "CenterLoss",
    "ClassMeanLoss",
    "DFFLoss",
    "ELoPE",
    "EmbeddingHead",
    "EmbeddingLoss",
    "GlobalAvgPool2d",
    "GlobalKMaxPool2d",
    "LocalizationModule",
    "ModelSpec",
    "Prediction",
    "WeightsError",
    "WithinClassLoss",
    "__version__",
    "available_backbones",
    "build_backbone",
    "class_mean_loss",
    "create_model",
    "crop_and_resize",
    "global_kmax_pool",
    "heatmap_loss",
    "heatmap_to_box",
    "load_model",
    "load_weights",
    "mean_heatmap",
    "resize",
    "save_model",
    "update_class_means",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
