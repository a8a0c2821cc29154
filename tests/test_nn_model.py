"""The assembled model: options, one-pass prediction, recipe-stage switches, backbones."""

import pytest
import torch
import torch.nn.functional as F

from elope import ELoPE, GlobalAvgPool2d, GlobalKMaxPool2d, create_model
from elope.engine.stages import enable_weighted_pooling, init_localizer_from_backbone
from elope.spec import ModelSpec

SMALL = {"spec": ModelSpec(image_size=64)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ELoPE("resnet18", 5, **SMALL).eval()


def test_forward_shapes_and_embeddings(model):
    x = torch.randn(3, 3, 64, 64)
    logits, emb = model(x, return_embeddings=True)
    assert logits.shape == (3, 5) and emb.shape == (3, 512)
    torch.testing.assert_close(model(x), logits)
    torch.testing.assert_close(model.classifier(emb), logits)  # the classifier reads the raw embedding


@pytest.mark.parametrize(
    ("pooling", "kind", "k"), [("gap", GlobalAvgPool2d, None), ("gmp", GlobalKMaxPool2d, 1)]
)
def test_pooling_baselines(pooling, kind, k):
    m = ELoPE("resnet18", 3, pooling=pooling, localizer=False, **SMALL)
    assert isinstance(m.pool, kind) and (k is None or m.pool.k == k)
    assert m.localizer is None
    with pytest.raises(ValueError, match="gkmp"):
        ELoPE("resnet18", 3, pooling=pooling, weighted=True)


def test_invalid_options():
    with pytest.raises(ValueError, match="'gap', 'gmp', 'gkmp'"):
        ELoPE("resnet18", 3, pooling="avg")
    with pytest.raises(ValueError, match="unknown backbone"):
        ELoPE("resnet-nonexistent-xyz", 3)


def test_predict_uses_localizer_box_and_returns_input_coordinates(model, monkeypatch):
    heat = torch.zeros(2, 1, 14, 14)
    heat[0, 0, 7:14, 0:7] = 1.0  # bottom-left quarter
    heat[1, 0, 0:14, 0:14] = 1.0
    heat[1, 0, 0, 0] = 0.0
    monkeypatch.setattr(model.localizer, "forward", lambda images: heat)
    images = torch.randn(2, 3, 140, 280)
    pred = model.predict(images, top=3)
    assert pred.classes.shape == (2, 3) and pred.scores.shape == (2, 3)
    torch.testing.assert_close(pred.boxes[0], torch.tensor([0.0, 70.0, 140.0, 140.0]))
    torch.testing.assert_close(pred.boxes[1], torch.tensor([0.0, 0.0, 280.0, 140.0]))
    assert torch.all(pred.scores[:, :-1] >= pred.scores[:, 1:])
    # the classifier saw the crop of the original image, resized to image_size
    crop = torch.nn.functional.interpolate(
        images[:1, :, 70:140, 0:140], size=(64, 64), mode="bilinear", align_corners=False, antialias=True
    )
    probs = model(crop).softmax(1)
    assert probs.argmax().item() == pred.classes[0, 0].item()


def test_predict_list_of_sizes_and_restores_mode(model):
    model.train()
    pred = model.predict([torch.randn(3, 50, 70), torch.randn(3, 90, 40)], top=1)
    assert model.training
    model.eval()
    assert pred.classes.shape == (2, 1) and pred.heatmaps.shape == (2, 1, 14, 14)
    assert (
        pred.boxes[0, 2] <= 70
        and pred.boxes[0, 3] <= 50
        and pred.boxes[1, 2] <= 40
        and pred.boxes[1, 3] <= 90
    )


def test_predict_without_localizer_uses_whole_image():
    m = ELoPE("resnet18", 4, localizer=False, **SMALL)
    pred = m.predict(torch.randn(2, 3, 30, 40))
    torch.testing.assert_close(pred.boxes, torch.tensor([[0.0, 0.0, 40.0, 30.0]] * 2))
    assert pred.heatmaps is None


def test_enable_weighted_pooling_and_gradient():
    torch.manual_seed(0)
    m = ELoPE("resnet18", 4, **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    before = m(x)
    enable_weighted_pooling(m)
    assert m.config["weighted"] and m.pool.weights.shape == (4,)
    torch.testing.assert_close(m(x), before)
    F.cross_entropy(m(x), torch.tensor([0, 1])).backward()
    assert m.pool.weights.grad is not None and m.pool.weights.grad.abs().sum() > 0


def test_init_localizer_from_backbone():
    m = ELoPE("resnet18", 4, **SMALL)
    with torch.no_grad():  # stand-in for stage-1 training moving the backbone away from its init
        for p in m.features.parameters():
            p.add_(1.0)
        m.features.layer1[1].bn2.running_var.add_(1.0)
    assert not torch.equal(m.localizer.stem.conv1.weight, m.features.conv1.weight)
    head = m.localizer.head.weight.clone()
    init_localizer_from_backbone(m)
    assert torch.equal(m.localizer.stem.conv1.weight, m.features.conv1.weight)
    assert torch.equal(m.localizer.stem.layer1[1].bn2.running_var, m.features.layer1[1].bn2.running_var)
    assert m.localizer.stem.conv1.weight.data_ptr() != m.features.conv1.weight.data_ptr()  # a copy
    assert torch.equal(m.localizer.head.weight, head)


def test_config_rebuilds_the_same_architecture(model):
    clone = ELoPE(**model.config, spec=model.spec)
    clone.load_state_dict(model.state_dict())
    assert create_model("resnet18", 5).config["backbone"] == "resnet18"


def test_timm_backbone():
    timm = pytest.importorskip("timm")
    assert timm.is_model("resnet10t")
    m = ELoPE("resnet10t", 3, spec=ModelSpec(image_size=64)).eval()
    assert m.num_features == 512
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert m.localizer(torch.randn(1, 3, 64, 64)).shape[:2] == (1, 1)
    init_localizer_from_backbone(m)
    stem = dict(m.localizer.stem.named_parameters())
    feats = dict(m.features.named_parameters())
    assert stem and all(torch.equal(p, feats[name]) for name, p in stem.items())


def test_crops_keep_the_inputs_memory_format():
    model = ELoPE("resnet18", 3, embedding_dim=8, spec=ModelSpec(image_size=32)).eval()
    x = torch.randn(2, 3, 40, 40)
    crops, _, _ = model.crop(x.contiguous(memory_format=torch.channels_last))
    assert crops.shape == (2, 3, 32, 32) and crops.is_contiguous(memory_format=torch.channels_last)
    assert model.crop(x)[0].is_contiguous()  # NCHW in, NCHW out
    plain = ELoPE("resnet18", 3, embedding_dim=8, localizer=False, spec=ModelSpec(image_size=32)).eval()
    assert plain.crop(x.contiguous(memory_format=torch.channels_last))[0].is_contiguous(
        memory_format=torch.channels_last
    )


def test_predict_restores_the_mode_of_every_submodule():
    """A localizer frozen in eval mode while the classifier trains stays in eval mode after predict."""
    model = ELoPE("resnet18", 3, embedding_dim=8, spec=ModelSpec(image_size=64))
    model.train()
    model.localizer.eval()
    model.predict(torch.randn(2, 3, 64, 64))
    assert model.training and model.features.training and not model.localizer.training
    assert all(not m.training for m in model.localizer.modules())


def test_a_crop_from_the_source_keeps_its_resolution():
    """The crop is cut from the crop source (2 × the input): fine detail inside the box survives, where a
    crop of the input-size image, upsampled, has lost it (the point of cropping early, Fig. 5)."""
    from elope.nn.crop import crop_and_resize, resize

    source = torch.zeros(1, 3, 128, 128)
    source[..., 32:96, 32:96] = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 * 2.0 - 1.0
    box = torch.tensor([[32.0, 32.0, 96.0, 96.0]])
    from_source = crop_and_resize(source, box, 64)
    from_input = crop_and_resize(resize(source, 64), box / 2, 64)
    assert from_source.abs().mean() > 0.9  # the 1-pixel checkerboard, intact
    assert from_input.abs().mean() < 0.3  # averaged away by the resize to 64
