"""elope: ELoPE (Hanselmann & Ney, WACV 2020) for fine-grained visual classification in PyTorch.

Global k-max pooling (Sec. 3), an embedding layer trained with a class-mean loss (Sec. 4) and a
lightweight localization module that crops the image before the backbone sees it (Sec. 5).

The package is layered, imports running downward only (``docs/architecture.md``, checked by
``tests/test_architecture.py``): ``nn`` (the paper's parts) ← ``data`` ← ``deploy`` ← ``runs`` (the run
folder) ← ``engine`` (the training recipe) ← ``tasks`` (evaluate, predict, ablate, ...) ← ``commands``.
"""

from elope.nn import (
    LOSS_VARIANTS,
    POOLINGS,
    CenterLoss,
    ClassMeanLoss,
    DFFLoss,
    ELoPE,
    EmbeddingHead,
    GlobalAvgPool2d,
    GlobalKMaxPool2d,
    LocalizationModule,
    Prediction,
    WeightsError,
    WithinClassLoss,
    available_backbones,
    build_backbone,
    class_mean_loss,
    create_model,
    crop_and_resize,
    global_kmax_pool,
    heatmap_loss,
    heatmap_to_box,
    load_weights,
    mean_heatmap,
    resize,
    update_class_means,
)
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
