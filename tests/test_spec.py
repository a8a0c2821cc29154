"""The model's spec (``elope.spec``): the whole inference contract (τ, sides, box rule, upsampling, margin,
normalisation, the localization module's input), each value defined, defaulted and checked once; every
layer reads the model's spec, a command's --tau is applied once, when the model is loaded, and
``model.json`` stores it once, written by ``to_dict`` and read by ``from_dict`` (issue 27)."""

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
from elope.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPEC_FIELDS,
    TAU_RANGE,
    ModelSpec,
    check_tau,
    crop_source_size,
    spec_default,
)


@pytest.mark.parametrize("tau", [0.0, 0.3, 0.999])
def test_tau_range_is_one_definition(tau: float) -> None:
    assert check_tau(tau) == tau
    assert load_config("cub", overrides={"model.tau": tau}).model.tau == tau
    assert ModelSpec(64, 128, tau).tau == tau


@pytest.mark.parametrize("tau", [-0.1, 1.0, 1.5, math.nan, True, "0.3"])
def test_tau_out_of_range_is_refused_everywhere_alike(tau: object) -> None:
    with pytest.raises(ValueError, match=r"tau must lie in \[0, 1\)"):
        check_tau(tau)
    with pytest.raises(ValueError, match="tau must lie"):
        ModelSpec(64, 128, tau)  # type: ignore[arg-type]
    if isinstance(tau, float) and math.isfinite(tau):
        with pytest.raises(ConfigError, match="tau must lie"):
            load_config("cub", overrides={"model.tau": tau})
    assert TAU_RANGE == (0.0, 1.0)


def test_tau_is_checked_once_not_on_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27: from --tau to heatmap_to_box τ was checked four times, the last on every batch; now the
    spec checks it when it is made, and the model's batches read the checked value."""
    model = ELoPE("resnet18", 3, embedding_dim=8, k=1, spec=ModelSpec(image_size=32, tau=0.4)).eval()
    calls = []

    def counting(tau: object) -> float:
        calls.append(tau)
        return check_tau(tau)

    monkeypatch.setattr("elope.spec.check_tau", counting)
    monkeypatch.setattr("elope.nn.localization.check_tau", counting, raising=False)  # where it was
    for _ in range(3):
        model.predict(torch.randn(2, 3, 64, 64))
    assert calls == []
    model.spec = model.spec.replace(tau=0.5)
    assert calls == [0.5]


def test_spec_is_frozen_and_validated() -> None:
    spec = ModelSpec(64, crop_source_size(64), 0.3)
    assert spec.crop_source == 128 and spec.mean is None  # None: the backbone's statistics
    with pytest.raises(AttributeError):
        spec.tau = 0.5  # type: ignore[misc]
    assert spec.replace(tau=0.5).tau == 0.5 and spec.tau == 0.3
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    bad_values = (
        {"image_size": 0},
        {"image_size": 5000},
        {"crop_source": 2.5},
        {"mean": (0.5, 0.5), "std": (1.0, 1.0)},
        {"mean": (0.5, 0.5, 0.5), "std": (1.0, 0.0, 1.0)},
        {"mean": (0.5, 0.5, 0.5)},  # without its std
        {"box_rule": "largest"},
        {"heatmap_upsample": 1},
        {"localizer_input": 8},
    )
    for bad in bad_values:
        with pytest.raises(ValueError):
            spec.replace(**bad)


def test_every_inference_value_is_in_the_spec_with_its_one_default() -> None:
    """The box rule, the upsampling and the localization module's input side joined the spec; the recipe's
    schema takes its defaults from the spec (τ 0.3, 448 px, 64 px were written two or three times)."""
    from elope.config.recipe import DatasetConfig, ModelConfig

    assert SPEC_FIELDS == (
        "image_size", "crop_source", "tau", "mean", "std",
        "box_margin", "box_rule", "heatmap_upsample", "localizer_input",
    )  # fmt: skip
    assert (spec_default("tau"), spec_default("image_size"), spec_default("localizer_input")) == (
        0.3,
        448,
        64,
    )
    for name in ("tau", "box_margin", "box_rule", "heatmap_upsample", "localizer_input"):
        assert ModelConfig.model_fields[name].default == spec_default(name), name
    for name in ("image_size", "crop_source"):
        assert DatasetConfig.model_fields[name].default == spec_default(name), name
    default = ModelSpec()
    assert (default.image_size, default.crop_source, default.tau, default.box_rule) == (448, 896, 0.3, "all")


def test_model_takes_its_spec_whole_and_few_other_arguments() -> None:
    """``ELoPE(spec=...)``: the constructor lost the spec's nine values (it took 19 arguments)."""
    import inspect

    parameters = list(inspect.signature(ELoPE.__init__).parameters)[1:]
    assert len(parameters) <= 10 and "spec" in parameters
    assert not set(parameters) & set(SPEC_FIELDS)
    with pytest.raises(TypeError):
        ELoPE("resnet18", 3, tau=0.4)  # type: ignore[call-arg]
    model = ELoPE("resnet18", 3, embedding_dim=8, spec=ModelSpec(image_size=32, localizer_input=32))
    assert model.localizer is not None and model.localizer.input_size == 32
    with pytest.raises(ValueError, match="localizer_input 64 differs"):
        model.spec = model.spec.replace(localizer_input=64)


def test_model_resolves_its_spec_once() -> None:
    model = ELoPE("resnet18", 3, embedding_dim=8, localizer=False, spec=ModelSpec(image_size=64, tau=0.4))
    imagenet = ModelSpec(64, 128, 0.4, IMAGENET_MEAN, IMAGENET_STD)
    assert model.spec == imagenet  # crop source 2 × image_size, the statistics of the backbone's weights
    lite = ELoPE("efficientnet_lite0", 3, localizer=False, spec=ModelSpec(image_size=64, crop_source=96))
    assert (lite.spec.crop_source, lite.spec.mean) == (96, (0.5, 0.5, 0.5))  # what its weights expect
    with pytest.raises(TypeError, match="ModelSpec"):
        model.spec = {"tau": 0.5}  # type: ignore[assignment]
    assert ELoPE(**model.config, spec=model.spec).spec == model.spec


def test_tau_override_is_applied_when_the_model_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ELoPE("resnet18", 3, embedding_dim=8, spec=ModelSpec(image_size=32, tau=0.3)).eval()
    save_model(model, tmp_path / "model", {"classes": ["a", "b", "c"]})
    run = load_run(tmp_path, tau=0.6)
    assert run.spec.tau == 0.6 and run.model.spec.tau == 0.6  # one spec, read by every layer
    assert json.loads((tmp_path / "model" / "model.json").read_text())["spec"]["tau"] == 0.3
    with pytest.raises(ValueError, match="tau must lie"):
        load_run(tmp_path, tau=1.0)
    images = torch.randn(2, 3, 64, 64)
    boxes, heatmaps = run.model.localize(images)
    assert torch.equal(boxes, heatmap_to_box(heatmaps, 0.6, (64, 64)))
