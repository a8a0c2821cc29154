"""The spec in files (issue 27): ``model.json`` (version 3) and the checkpoints store it once, written by
``ModelSpec.to_dict`` and read by ``ModelSpec.from_dict``; files of the previous version, which kept the
spec's values among the constructor arguments, still load with the same spec and the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from elope.nn.model import ELoPE
from elope.runs.checkpoint import architecture as _arch
from elope.runs.model_folder import load_model, save_model
from elope.spec import IMAGENET_MEAN, IMAGENET_STD, LEGACY_VALUES, SPEC_FIELDS, ModelSpec

#: ``model.json`` → ``model`` as elope wrote it in version 2 (the constructor arguments, the spec's among
#: them), for the model of :func:`_model`.
VERSION_2_MODEL = {
    "backbone": "resnet18",
    "num_classes": 3,
    "k": 2,
    "weighted": False,
    "embedding_dim": 8,
    "pooling": "gkmp",
    "localizer": True,
    "image_size": 64,
    "crop_source": 96,
    "tau": 0.45,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "box_margin": 0.1,
    "localizer_input": 32,
    "heatmap_upsample": True,
    "box_rule": "peak",
}

SPEC = ModelSpec(64, 96, 0.45, IMAGENET_MEAN, IMAGENET_STD, 0.1, "peak", True, 32)


def _model() -> ELoPE:
    torch.manual_seed(0)
    return ELoPE("resnet18", 3, SPEC, k=2, embedding_dim=8).eval()


def test_model_json_stores_the_spec_once_and_reads_it_back(tmp_path: Path) -> None:
    model = _model()
    save_model(model, tmp_path, {"classes": ["a", "b", "c"]})
    saved = json.loads((tmp_path / "model.json").read_text())
    assert saved["version"] == 3 and saved["spec"] == SPEC.to_dict()
    assert not set(saved["model"]) & set(SPEC_FIELDS)  # the architecture only
    assert load_model(tmp_path)[0].spec == SPEC


def test_model_json_of_version_2_loads_with_the_same_spec_and_predictions(tmp_path: Path) -> None:
    model = _model()
    save_model(model, tmp_path, {"classes": ["a", "b", "c"]})
    old = {"format": "elope-model", "version": 2, "model": VERSION_2_MODEL, "classes": ["a", "b", "c"]}
    (tmp_path / "model.json").write_text(json.dumps(old))  # the weights stay; the description is old
    loaded, _ = load_model(tmp_path)
    assert loaded.spec == SPEC and dict(loaded.config) == dict(model.config)
    images = torch.randn(2, 3, 96, 96)
    expected, got = model.predict(images, top=3), loaded.predict(images, top=3)
    assert torch.equal(expected.classes, got.classes) and torch.equal(expected.boxes, got.boxes)
    before = {k: v for k, v in VERSION_2_MODEL.items() if k not in ("box_rule", "box_margin")}  # older v2
    (tmp_path / "model.json").write_text(json.dumps({**old, "model": before}))
    spec = load_model(tmp_path)[0].spec
    assert (spec.box_rule, spec.box_margin) == (LEGACY_VALUES["box_rule"], LEGACY_VALUES["box_margin"])


def test_the_spec_reader_is_strict_about_its_keys() -> None:
    data = SPEC.to_dict()
    assert ModelSpec.from_dict(data) == SPEC
    with pytest.raises(ValueError, match=r"lacks \['tau'\]"):
        ModelSpec.from_dict({k: v for k, v in data.items() if k != "tau"})
    with pytest.raises(ValueError, match=r"unknown keys \['input_size'\]"):
        ModelSpec.from_dict({**data, "input_size": 48})
    assert ModelSpec.from_legacy({**data, "input_size": 64}, crop_source="input_size").crop_source == 64


def test_a_checkpoint_of_before_the_spec_was_whole_has_the_same_architecture() -> None:
    """Checkpoints kept the spec's values in ``model_config`` (no ``model_spec``): the resume compares
    the same architecture (the box rule, the upsampling and the localizer's input included)."""
    model = _model()
    new = _arch(dict(model.config), model.spec.to_dict())
    assert _arch(dict(VERSION_2_MODEL), None) == new
    assert new["box_rule"] == "peak" and "tau" not in new and "weighted" not in new
    assert _arch({**VERSION_2_MODEL, "box_rule": "all"}, None) != new
