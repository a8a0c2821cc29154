"""elope: ELoPE (Hanselmann & Ney, WACV 2020) for fine-grained visual classification in PyTorch.

Global k-max pooling (Sec. 3), an embedding layer trained with a class-mean loss (Sec. 4) and a
lightweight localization module that crops the image before the backbone sees it (Sec. 5).

The package is layered, imports running downward only (``docs/architecture.md``, checked by
``tests/test_architecture.py``): ``nn`` (the paper's parts) ← ``data`` ← ``deploy`` ← ``runs`` (the run
folder) ← ``engine`` (the training recipe) ← ``tasks`` (evaluate, predict, ablate, ...) ← ``commands``.
"""

from elope.nn.backbones import available_backbones, build_backbone
from elope.nn.crop import crop_and_resize, resize
from elope.nn.embedding import EmbeddingHead
from elope.nn.localization import LocalizationModule, heatmap_loss, heatmap_to_box, mean_heatmap
from elope.nn.losses import (
    LOSS_VARIANTS,
    CenterLoss,
    ClassMeanLoss,
    DFFLoss,
    WithinClassLoss,
    class_mean_loss,
    update_class_means,
)
from elope.nn.model import POOLINGS, ELoPE, Prediction, create_model
from elope.nn.pooling import GlobalAvgPool2d, GlobalKMaxPool2d, global_kmax_pool
from elope.nn.weights import WeightsError, load_weights
from elope.runs.model_folder import load_model, save_model

__version__ = "0.1.0"

__all__ = [
    "LOSS_VARIANTS",
    "POOLINGS",
    "CenterLoss",
    "ClassMeanLoss",
    "DFFLoss",
    "ELoPE",
    "EmbeddingHead",
    "GlobalAvgPool2d",
    "GlobalKMaxPool2d",
    "LocalizationModule",
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
