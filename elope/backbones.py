"""Backbones by name: torchvision ResNets built in, any timm CNN with the optional ``timm`` extra.

A backbone gives ELoPE two things: ``features``, the network up to its last convolutional layer
(images → (B, D, h, w)), and a fresh copy of its stem and first residual stage for the localization
module (Sec. 5). The stem copy is built so that its state-dict keys are a subset of the keys of
``features``, which is what lets the localization module be initialised from the trained classifier.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from torchvision import models

__all__ = ["TORCHVISION_BACKBONES", "Backbone", "available_backbones", "build_backbone"]

TORCHVISION_BACKBONES: dict[str, Callable[..., models.ResNet]] = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "resnet101": models.resnet101,
}
_RESNET_STEM = ("conv1", "bn1", "relu", "maxpool", "layer1")
_RESNET_BODY = (*_RESNET_STEM, "layer2", "layer3", "layer4")


@dataclass
class Backbone:
    """What :class:`elope.ELoPE` needs from a backbone."""

    features: nn.Module
    num_features: int
    make_stem: Callable[[], nn.Module]
    stem_channels: int


def available_backbones() -> list[str]:
    """The built-in torchvision names; with timm installed, any name ``timm.list_models()`` knows works too."""
    return sorted(TORCHVISION_BACKBONES)


def _torchvision_backbone(name: str, pretrained: bool) -> Backbone:
    weights = models.get_model_weights(name).DEFAULT if pretrained else None
    net = TORCHVISION_BACKBONES[name](weights=weights)
    features = nn.Sequential(OrderedDict((part, getattr(net, part)) for part in _RESNET_BODY))
    block = net.layer1[-1]  # Bottleneck (conv3) or BasicBlock (conv2): its last conv sets the width
    stem_channels = (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels

    def make_stem() -> nn.Module:
        return nn.Sequential(OrderedDict((part, copy.deepcopy(getattr(net, part))) for part in _RESNET_STEM))

    return Backbone(features, net.fc.in_features, make_stem, stem_channels)


class _FirstOutput(nn.Module):
    """Wraps a timm ``features_only`` network that returns a list and keeps its single output."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)[0]


def _timm_backbone(name: str, pretrained: bool) -> Backbone:
    try:
        import timm
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ValueError(
            f"unknown backbone {name!r}: built in are {available_backbones()}; for timm models install the "
            "extra with `pip install 'elope[timm]'`"
        ) from error
    if not timm.is_model(name):
        raise ValueError(
            f"unknown backbone {name!r}: neither a built-in torchvision ResNet {available_backbones()} nor a "
            "timm model (see timm.list_models())"
        )
    probe = timm.create_model(name, pretrained=False, features_only=True)
    last = len(probe.feature_info) - 1
    net = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(last,))
    num_features = net.feature_info.channels()[-1]
    stem_channels = probe.feature_info.channels()[1]

    def make_stem() -> nn.Module:
        return _FirstOutput(timm.create_model(name, pretrained=False, features_only=True, out_indices=(1,)))

    return Backbone(_FirstOutput(net), num_features, make_stem, stem_channels)


def build_backbone(name: str, pretrained: bool = False) -> Backbone:
    """Build a backbone by name.

    ``resnet18/34/50/101`` come from torchvision; ``pretrained=True`` loads its default ImageNet weights
    through the torchvision weights API (downloaded once into the torch hub cache). Any other name is looked
    up in timm, when installed. Note that the paper's ImageNet weights were trained with the images that
    overlap the CUB and Cars test sets removed (Sec. 6); stock ImageNet weights are not that starting point.
    """
    if name in TORCHVISION_BACKBONES:
        return _torchvision_backbone(name, pretrained)
    return _timm_backbone(name, pretrained)
