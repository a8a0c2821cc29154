"""The crop's box margin (``model.box_margin``, :func:`elope.nn.crop.expand_boxes`) and the crop decision
(``train.crop_decision: holdout``, :mod:`elope.engine.crop_decision`)."""

from __future__ import annotations

import json

import pytest
import torch

from elope.config import ConfigError, load_config
from elope.nn.crop import crop_and_resize, expand_boxes
from elope.nn.model import ELoPE
from elope.runs.loaded import load_run
from elope.spec import ModelSpec, check_box_margin


def test_expand_boxes_by_hand():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 100.0, 50.0], [90.0, 5.0, 98.0, 9.0]])
    out = expand_boxes(boxes, 0.25, (64, 100))  # frame: height 64, width 100
    # box 1: width 20, height 40 -> 5 and 10 on each side; the bottom 70 is clipped to the frame's 64
    # box 2: the whole width already (clipped), height 50 -> 12.5 above (clipped at 0) and below (62.5)
    # box 3: width 8 -> 2 each side, right edge 100 (clipped); height 4 -> 1 each side
    expected = torch.tensor([[5.0, 10.0, 35.0, 64.0], [0.0, 0.0, 100.0, 62.5], [88.0, 4.0, 100.0, 10.0]])
    torch.testing.assert_close(out, expected)
    assert expand_boxes(boxes, 0.0, 64) is boxes  # the paper's crop: the box itself


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), True, "0.1"])
def test_margin_range_checked_once(bad):
    with pytest.raises(ValueError, match="box_margin must lie in"):
        check_box_margin(bad)
    with pytest.raises((ValueError, TypeError)):
        ModelSpec(image_size=32, crop_source=64, tau=0.5, box_margin=bad)
    if isinstance(bad, float):  # (the recipe's own number parsing is the config's: test_config.py)
        with pytest.raises(ConfigError, match="box_margin"):
            load_config("synthetic", overrides={"model.box_margin": bad})


def test_spec_round_trip_and_old_files():
    spec = ModelSpec(image_size=32, crop_source=64, tau=0.5, box_margin=0.2)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    old = {k: v for k, v in spec.to_dict().items() if k != "box_margin"}  # a model.json of before
    assert ModelSpec.from_legacy(old).box_margin == 0.0


def _model(margin: float) -> ELoPE:
    torch.manual_seed(0)
    model = ELoPE(
        "resnet18",
        3,
        embedding_dim=8,
        spec=ModelSpec(image_size=32, crop_source=64, tau=0.5, box_margin=margin),
    )
    return model.eval()


def test_model_crops_at_the_grown_box_and_reports_the_box_itself():
    images = torch.randn(2, 3, 64, 64)
    plain, grown = _model(0.0), _model(0.3)
    grown.load_state_dict(plain.state_dict())
    crops0, boxes0, _ = plain.crop(images)
    crops1, boxes1, _ = grown.crop(images)
    torch.testing.assert_close(boxes0, boxes1)  # the localization's box (Table 4 scores it), no margin
    expected = crop_and_resize(images, expand_boxes(boxes0, 0.3, (64, 64)), 32)
    torch.testing.assert_close(crops1, expected)
    if not torch.equal(expand_boxes(boxes0, 0.3, (64, 64)), boxes0):  # a box inside the frame grows
        assert not torch.allclose(crops0, crops1)
    assert grown.spec.box_margin == 0.3 and ELoPE(**grown.config, spec=grown.spec).spec.box_margin == 0.3


def test_holdout_needs_a_validation_split_where_the_run_crops():
    with pytest.raises(ConfigError, match="crop_decision=holdout decides on a validation split"):
        load_config("synthetic", overrides={"train.crop_decision": "holdout", "dataset.val_fraction": 0.0})
    # a run that does not crop (GAP baseline: classifier only) has nothing to decide
    load_config(
        "synthetic",
        overrides={"train.crop_decision": "holdout", "dataset.val_fraction": 0.0, "model.localizer": False,
                   "train.stages": ["classifier"]},
    )  # fmt: skip
    paper = load_config("synthetic", paper=True)
    assert paper.train.crop_decision == "always" and paper.model.box_margin == 0.0
    assert paper.dataset.val_fraction == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("winner", ["crops", "whole"])
def test_decision_keeps_the_winner(tmp_path, monkeypatch, winner):
    """With the validation scores forced, whole images winning moves the crop pipeline to RUN/crops and
    makes RUN/model the stage-1 classifier (no localization module, the teacher's weights and means)."""
    from safetensors.torch import load_file

    import elope.engine.crop_decision as decision
    from elope.data.synthetic import write_synthetic
    from elope.engine.train import run_training

    def fake_scores(model, dataset, plan, dist):
        crops = model.localizer is not None
        good = (winner == "crops") == crops
        return {"top1": 0.9 if good else 0.5, "loss": 1.0}

    monkeypatch.setattr(decision, "evaluate_split", fake_scores)
    root = write_synthetic(tmp_path / "data", classes=3, train=6, test=2, size=64, seed=0)
    cfg = load_config(
        "synthetic",
        overrides={
            "dataset.root": str(root), "dataset.image_size": 64, "dataset.crop_source": None,
            "dataset.val_fraction": 0.2, "dataset.num_workers": 0, "model.backbone": "resnet18",
            "model.pretrained": False, "model.embedding_dim": 8, "model.tau_select": "fixed",
            "train.crop_decision": "holdout", "train.progress": False, "train.channels_last": False,
            "model.box_margin": 0.2,
        },
        epochs=1,
        batch_size=4,
    )  # fmt: skip
    out = tmp_path / "run"
    run_training(cfg, out, echo=lambda *_: None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    [record] = [r for r in records if r.get("event") == "crop_decision"]
    assert record["choice"] == winner and record["crops_top1"] == (0.9 if winner == "crops" else 0.5)
    meta = json.loads((out / "model" / "model.json").read_text())
    if winner == "crops":
        assert meta["model"]["localizer"] and not (out / "crops").exists()
        return
    assert not meta["model"]["localizer"] and meta["crop_decision"]["choice"] == "whole"
    # a finished run: evaluate takes it as it is (it used to call it unfinished at stage classifier)
    assert load_run(out).check_finished() is None
    from elope.tasks.evaluate import evaluate_run

    for folder in (out, out / "crops"):  # both evaluate (the suite scores both)
        assert 0.0 <= evaluate_run(folder, progress=False, maxboxacc=False)["top1"] <= 1.0
    assert json.loads((out / "crops" / "model.json").read_text())["model"]["localizer"]
    for name in ("model.safetensors", "class_means.safetensors"):
        model, teacher = load_file(out / "model" / name), load_file(out / "teacher" / name)
        assert model.keys() == teacher.keys()
        assert all(torch.equal(model[k], teacher[k]) for k in model)
