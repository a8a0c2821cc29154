"""Weight files: safetensors and weights_only torch files, clear mismatch errors, model folders."""

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18

from elope import ELoPE, WeightsError, load_model, load_weights, save_model
from elope.engine.stages import enable_weighted_pooling
from elope.spec import ModelSpec


def test_save_and_load_model_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = ELoPE("resnet18", 4, spec=ModelSpec(image_size=64, tau=0.2)).eval()
    enable_weighted_pooling(model)
    save_model(model, tmp_path / "model", {"classes": ["a", "b", "c", "d"]})
    loaded, meta = load_model(tmp_path / "model")
    assert meta["classes"] == ["a", "b", "c", "d"] and meta["model"]["weighted"] is True
    assert loaded.spec.tau == 0.2 and not loaded.training
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x))


def test_whole_model_file_torch_and_safetensors(tmp_path):
    source = ELoPE("resnet18", 3)
    torch.save({"model": source.state_dict()}, tmp_path / "ckpt.pt")
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    for name in ("ckpt.pt", "w.safetensors"):
        target = ELoPE("resnet18", 3, weights=tmp_path / name)
        assert torch.equal(target.classifier.weight, source.classifier.weight)


def test_backbone_only_state_dict_ignores_imagenet_head(tmp_path):
    net = resnet18(num_classes=1000)
    torch.save(net.state_dict(), tmp_path / "resnet18_imagenet.pth")
    model = ELoPE("resnet18", 7, weights=tmp_path / "resnet18_imagenet.pth")
    assert torch.equal(model.features.layer4[1].conv2.weight, net.layer4[1].conv2.weight)


def test_other_architecture_is_refused_with_a_listing(tmp_path):
    save_file(ELoPE("resnet18", 3).state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(WeightsError) as info:
        ELoPE("resnet34", 3, weights=tmp_path / "r18.safetensors")
    message = str(info.value)
    assert "missing in the file" in message and "features.layer1.2." in message


def test_shape_mismatch_is_listed(tmp_path):
    save_file(ELoPE("resnet18", 3).state_dict(), tmp_path / "three.safetensors")
    with pytest.raises(WeightsError, match=r"classifier.weight: file \(3, 512\) vs model \(5, 512\)"):
        load_weights(ELoPE("resnet18", 5), tmp_path / "three.safetensors")


def test_pickled_objects_are_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"model": Evil()}, handle)
    with pytest.raises(WeightsError, match=r"refused to load .*will not be loaded") as info:
        load_weights(ELoPE("resnet18", 2), tmp_path / "evil.pt")
    assert "weights_only" not in str(info.value)  # never PyTorch's advice to load it unsafely


def test_missing_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(ELoPE("resnet18", 2), tmp_path / "nope.safetensors")
    with pytest.raises(WeightsError, match=r"model.json not found"):
        load_model(tmp_path)
