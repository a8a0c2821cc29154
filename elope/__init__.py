"""elope: ELoPE (Hanselmann & Ney, WACV 2020) for fine-grained visual classification in PyTorch.

Global k-max pooling (Sec. 3), an embedding layer trained with a class-mean loss (Sec. 4) and a
lightweight localization module that crops the image before the backbone sees it (Sec. 5).
"""

from elope.nn.backbones import available_backbones, build_backbone
from elope.nn.embedding import (
    LOSS_VARIANTS,
    ClassMeanLoss,
    EmbeddingHead,
    class_mean_loss,
    update_class_means,
)
from elope.nn.localization import (
    LocalizationModule,
    crop_and_resize,
    heatmap_loss,
    heatmap_to_box,
    mean_heatmap,
    resize,
)
from elope.nn.model import POOLINGS, ELoPE, Prediction, create_model
from elope.nn.pooling import GlobalAvgPool2d, GlobalKMaxPool2d, global_kmax_pool
from elope.nn.weights import WeightsError, load_model, load_weights, save_model

__version__ = "0.1.0"

__all__ = [
    "LOSS_VARIANTS",
    "POOLINGS",
    "ClassMeanLoss",
    "ELoPE",
    "EmbeddingHead",
    "GlobalAvgPool2d",
    "GlobalKMaxPool2d",
    "LocalizationModule",
    "Prediction",
    "WeightsError",
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
