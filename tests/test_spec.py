"""The model's spec (``elope.spec``): one definition of τ's range, of the crop source and of the
normalisation, checked once; every layer reads the model's spec, and a command's --tau is applied once,
when the model is loaded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from elope.config import ConfigError, load_config
from elope.nn.localization import heatmap_to_box
from elope.nn.model import ELoPE
from elope.runs.loaded import load_run
from elope.runs.model_folder import save_model
from elope.spec import IMAGENET_MEAN, TAU_RANGE, ModelSpec, check_tau, crop_source_size


@pytest.mark.parametrize("tau", [0.0, 0.3, 0.999])
def test_tau_range_is_one_definition(tau: float) -> None:
    assert check_tau(tau) == tau
    assert load_config("cub", overrides={"model.tau": tau}).model.tau == tau
    assert ModelSpec(64, 128, tau).tau == tau
    heatmap_to_box(torch.rand(1, 1, 4, 4), tau, 8)


@pytest.mark.parametrize("tau", [-0.1, 1.0, 1.5, math.nan, True, "0.3"])
def test_tau_out_of_range_is_refused_everywhere_alike(tau: object) -> None:
    with pytest.raises(ValueError, match=r"tau must lie in \[0, 1\)"):
        check_tau(tau)
    with pytest.raises(ValueError, match="tau must lie"):
        ModelSpec(64, 128, tau)  # type: ignore[arg-type]
    if isinstance(tau, float) and math.isfinite(tau):
        with pytest.raises(ConfigError, match="tau must lie"):
            load_config("cub", overrides={"model.tau": tau})
        with pytest.raises(ValueError, match="tau must lie"):
            heatmap_to_box(torch.rand(1, 1, 4, 4), tau, 8)
    assert TAU_RANGE == (0.0, 1.0)


def test_spec_is_frozen_and_validated() -> None:
    spec = ModelSpec(64, crop_source_size(64), 0.3)
    assert spec.crop_source == 128 and spec.mean == IMAGENET_MEAN
    with pytest.raises(AttributeError):
        spec.tau = 0.5  # type: ignore[misc]
    assert spec.replace(tau=0.5).tau == 0.5 and spec.tau == 0.3
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    for bad in ({"image_size": 0}, {"crop_source": 2.5}, {"std": (1.0, 0.0, 1.0)}, {"mean": (0.5, 0.5)}):
        with pytest.raises(ValueError):
            spec.replace(**bad)


def test_model_resolves_its_spec_once() -> None:
    model = ELoPE("resnet18", 3, embedding_dim=8, image_size=64, tau=0.4, localizer=False)
    assert model.spec == ModelSpec(64, 128, 0.4)  # crop source 2 × image_size, ImageNet statistics
    lite = ELoPE("efficientnet_lite0", 3, image_size=64, crop_source=96, localizer=False)
    assert (lite.spec.crop_source, lite.spec.mean) == (96, (0.5, 0.5, 0.5))  # what its weights expect
    with pytest.raises(TypeError, match="ModelSpec"):
        model.spec = {"tau": 0.5}  # type: ignore[assignment]
    assert ELoPE(**model.config).spec == model.spec


def test_tau_override_is_applied_when_the_model_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ELoPE("resnet18", 3, embedding_dim=8, image_size=32, tau=0.3).eval()
    save_model(model, tmp_path / "model", {"classes": ["a", "b", "c"]})
    run = load_run(tmp_path, tau=0.6)
    assert run.spec.tau == 0.6 and run.model.spec.tau == 0.6  # one spec, read by every layer
    assert json.loads((tmp_path / "model" / "model.json").read_text())["model"]["tau"] == 0.3
    with pytest.raises(ValueError, match="tau must lie"):
        load_run(tmp_path, tau=1.0)
    images = torch.randn(2, 3, 64, 64)
    boxes, heatmaps = run.model.localize(images)
    assert torch.equal(boxes, heatmap_to_box(heatmaps, 0.6, (64, 64)))
