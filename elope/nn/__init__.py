"""The paper's parts as pure ``nn.Module``s and functions: no recipe state, no files written.

One idea per module, in the order of the paper: global k-max pooling (Sec. 3, :mod:`.pooling`), the
embedding layer (:mod:`.embedding`) and its class-mean losses (Sec. 4, :mod:`.losses`), the localization
module and the heatmap → box step (Sec. 5, :mod:`.localization`), the one crop (:mod:`.crop`), backbones
(:mod:`.backbones`, offline ImageNet weights in :mod:`.pretrained`, weight files in :mod:`.weights`) and
the model of Fig. 1 (:mod:`.model`).
"""

from elope.nn.backbones import available_backbones, build_backbone, pretrained_normalization
from elope.nn.crop import crop_and_resize, resize
from elope.nn.embedding import EmbeddingHead
from elope.nn.localization import LocalizationModule, heatmap_loss, heatmap_to_box, mean_heatmap
from elope.nn.losses import (
    LOSS_VARIANTS,
    LOSSES,
    CenterLoss,
    ClassMeanLoss,
    DFFLoss,
    WithinClassLoss,
    class_mean_loss,
    update_class_means,
)
from elope.nn.model import POOLINGS, Crops, ELoPE, Prediction, create_model
from elope.nn.pooling import GlobalAvgPool2d, GlobalKMaxPool2d, global_kmax_pool
from elope.nn.weights import WeightsError, load_state_dict_file, load_weights

__all__ = [
    "LOSSES",
    "LOSS_VARIANTS",
    "POOLINGS",
    "CenterLoss",
    "ClassMeanLoss",
    "Crops",
    "DFFLoss",
    "ELoPE",
    "EmbeddingHead",
    "GlobalAvgPool2d",
    "GlobalKMaxPool2d",
    "LocalizationModule",
    "Prediction",
    "WeightsError",
    "WithinClassLoss",
    "available_backbones",
    "build_backbone",
    "class_mean_loss",
    "create_model",
    "crop_and_resize",
    "global_kmax_pool",
    "heatmap_loss",
    "heatmap_to_box",
    "load_state_dict_file",
    "load_weights",
    "mean_heatmap",
    "pretrained_normalization",
    "resize",
    "update_class_means",
]
