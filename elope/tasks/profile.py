"""Computational cost, the paper's Table 3: multiply-adds and parameters of the baseline and of ELoPE.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (which reports FLOPs = 2 × MACs for
convolutions and matrix products) on one image, not by hand. Like the paper's figures it counts the
convolutions and fully connected layers; normalisation, activations, pooling and the crop are not counted
(together well under 1% of a ResNet).

* ``baseline``: torchvision's ResNet with a ``num_classes``-way classifier at ``image_size``.
* ``elope``: the one-pass pipeline of :meth:`elope.ELoPE.predict`: localization module on the 64×64
  copy, backbone on the ``image_size`` crop, k-max pooling, embedding layer and classifier.
* ``localization``: the localization module alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from elope.nn.backbones import TORCHVISION_BACKBONES
from elope.nn.model import ELoPE
from elope.spec import ModelSpec, spec_default
from elope.tasks.profile_limits import MAX_IMAGE_SIZE, MAX_WEIGHT_BYTES

__all__ = [
    "MAX_IMAGE_SIZE",
    "MAX_WEIGHT_BYTES",
    "PAPER_TABLE3",
    "count_macs",
    "count_params",
    "profile_models",
]


# Table 3 (ResNet-50, 200 classes, 1×3×448×448) and Sec. 5 ("only 220000" parameters).
PAPER_TABLE3 = {
    "baseline": {"macs": 1.648e10, "params": 24e6},
    "elope": {"macs": 1.654e10, "params": 25e6},
    "localization": {"params": 220e3},
}


def count_macs(module: nn.Module | Any, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one call ``module(*inputs)``, from ``torch.utils.flop_counter``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() // 2


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def _check_size(backbone: str, image_size: int) -> None:
    from elope.engine.preflight import _meta_features, feature_map_size, smallest_image_size

    if image_size > MAX_IMAGE_SIZE:
        raise ValueError(
            f"--image-size {image_size} is above {MAX_IMAGE_SIZE}: profile counts MACs by running one image, "
            f"which would take too much memory; MACs grow with the square of the side, so scale the "
            f"{MAX_IMAGE_SIZE} figure by ({image_size}/{MAX_IMAGE_SIZE})^2"
        )
    features = _meta_features(backbone)  # an unknown backbone: ConfigError (a ValueError) naming it
    hw = feature_map_size(features, image_size)
    if hw is None or hw[0] * hw[1] < 4:
        smallest = smallest_image_size(features, 4)
        got = "no feature map" if hw is None else f"a {hw[0]}x{hw[1]} last feature map"
        raise ValueError(
            f"--image-size {image_size} is too small for {backbone}: it gives {got}, and ELoPE's k-max pooling "
            f"(K = 4, Table 2) needs 4 positions; the smallest --image-size that works is {smallest}"
        )


def _check_memory(backbone: str, num_classes: int, image_size: int, embedding_dim: int) -> None:
    """Refuse models whose weights would take more than :data:`MAX_WEIGHT_BYTES`, counted on the meta
    device (nothing allocated) before anything is built for real."""
    with torch.device("meta"):
        params = count_params(
            ELoPE(backbone, num_classes, embedding_dim=embedding_dim, spec=ModelSpec(image_size=image_size))
        )
        if backbone in TORCHVISION_BACKBONES:
            params += count_params(TORCHVISION_BACKBONES[backbone](num_classes=num_classes))
    need = 4 * params
    if need > MAX_WEIGHT_BYTES:
        raise ValueError(
            f"--num-classes {num_classes} with --embedding-dim {embedding_dim} makes {params / 1e9:.2f} billion "
            f"parameters ({need / 2**30:.1f} GiB of weights for ELoPE and the baseline), over profile's limit of "
            f"{MAX_WEIGHT_BYTES / 2**30:g} GiB: the embedding layer and the classifier hold about "
            "(2048 + classes) x embedding-dim parameters; lower one of the two"
        )


def profile_models(
    backbone: str = "resnet50",
    num_classes: int = 200,
    image_size: int = spec_default("image_size"),
    embedding_dim: int = 512,
) -> dict[str, dict[str, int]]:
    """MACs and parameters of the baseline, the full ELoPE model and the localization module (Table 3).

    Raises ValueError for an input side above :data:`MAX_IMAGE_SIZE`, or too small for the backbone and
    K = 4 (saying the smallest side that works), and for weights over :data:`MAX_WEIGHT_BYTES`.
    """
    _check_size(backbone, image_size)
    _check_memory(backbone, num_classes, image_size, embedding_dim)
    images = torch.zeros(1, 3, image_size, image_size)
    model = ELoPE(
        backbone, num_classes, embedding_dim=embedding_dim, spec=ModelSpec(image_size=image_size)
    ).eval()
    result = {
        "elope": {"macs": count_macs(model.predict, images), "params": count_params(model)},
        "localization": {
            "macs": count_macs(model.localizer, images),
            "params": count_params(model.localizer),
        },
    }
    if backbone in TORCHVISION_BACKBONES:
        baseline = TORCHVISION_BACKBONES[backbone](num_classes=num_classes).eval()
        result = {
            "baseline": {"macs": count_macs(baseline, images), "params": count_params(baseline)},
            **result,
        }
    return result
