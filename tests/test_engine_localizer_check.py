"""The end of stage 2: τ chosen on the training split, and the check that reports a degenerate localizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from train_helpers import tiny_args, write_tiny_synthetic

from elope.cli import main
from elope.commands.train import STEP_HOOKS
from elope.config import PAPER_LOCALIZATION, load_config
from elope.engine import loop
from elope.engine.localizer_check import (
    LABEL_TAUS,
    TAU_GRID,
    LocalizerCheck,
    advice,
    boxes_decide,
    choose_tau,
    heatmap_contrast,
    loo_ncm_correct,
)
from elope.failures import TrainingError


def _check(**changes: object) -> LocalizerCheck:
    n = len(TAU_GRID)
    base = {
        "images": 10,
        "boxes": 10,
        "hits": [0] * n,
        "whole": [0] * n,
        "separability": None,
        "contrast": 0.9,
    }
    return LocalizerCheck(**{**base, **changes})


def test_heatmap_contrast_tells_a_blob_from_a_texture_and_a_constant():
    blob = torch.zeros(1, 1, 14, 14)
    blob[0, 0, 5:8, 5:8] = 1.0
    torch.manual_seed(0)
    texture = torch.rand(1, 1, 14, 14)
    values = heatmap_contrast(torch.cat([blob, texture, torch.full((1, 1, 14, 14), 3.0)]))
    assert values[0] == pytest.approx(1 - 9 / 196) and 0.4 < values[1] < 0.6 and values[2] == 0.0


def test_leave_one_out_nearest_class_mean_equals_the_loop():
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1, 0, 2])
    f = F.normalize(torch.randn(12, 5), dim=1)
    f[labels == 1] += 0.8  # one class apart, the others mixed
    f = F.normalize(f, dim=1)
    sums = torch.zeros(3, 5, dtype=torch.float64).index_add_(0, labels, f.double())
    counts = torch.bincount(labels).double()
    correct = 0
    for i in range(12):
        keep = torch.arange(12) != i
        means = torch.stack([f[keep & (labels == c)].mean(0) for c in range(3)])
        correct += int((F.normalize(means, dim=1) @ f[i]).argmax() == labels[i])
    assert loo_ncm_correct(f, labels, sums, counts) == correct
    assert 0 < correct < 12  # the check can tell a right from a wrong choice here
    # a class with a single member cannot be chosen for it once it is left out; an empty class never
    lone = torch.tensor([0, 0, 1])
    g = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    lone_sums = torch.zeros(4, 2, dtype=torch.float64).index_add_(0, lone, g.double())
    lone_counts = torch.bincount(lone, minlength=4).double()
    assert loo_ncm_correct(g, lone, lone_sums, lone_counts) == 2  # class 1's only image is never right
    # half of the features from another process: its sums join, its features stay there
    first = loo_ncm_correct(f[:6], labels[:6], sums, counts)
    assert first + loo_ncm_correct(f[6:], labels[6:], sums, counts) == correct


def test_tau_by_boxes_labels_auto_and_fixed():
    n = len(TAU_GRID)
    hits = [0] * n
    hits[TAU_GRID.index(0.6)] = hits[TAU_GRID.index(0.7)] = 8  # a tie goes to the smaller tau
    separability = [1.0] * n
    separability[TAU_GRID.index(0.4)] = 2.0
    check = _check(hits=hits, separability=separability)
    assert choose_tau(check, "boxes", 0.3) == (0.6, "boxes")
    assert choose_tau(check, "labels", 0.3) == (0.4, "labels")
    assert choose_tau(check, "auto", 0.3) == (0.6, "boxes")
    assert choose_tau(check, "fixed", 0.3) == (0.3, "fixed")
    no_boxes = _check(boxes=0, separability=separability)
    assert choose_tau(no_boxes, "auto", 0.3) == (0.4, "labels")
    with pytest.raises(TrainingError, match="tau_select=labels"):
        choose_tau(no_boxes, "boxes", 0.3)
    # boxes the module hits at no tau choose nothing: auto goes to the labels (10 % of the boxes is enough)
    noise = [0] * n
    noise[TAU_GRID.index(0.9)] = 9
    missed = _check(boxes=100, hits=noise, separability=separability)
    assert not boxes_decide(missed) and choose_tau(missed, "auto", 0.3) == (0.4, "labels")
    assert choose_tau(missed, "boxes", 0.3) == (0.9, "boxes")  # asked for explicitly: still the boxes
    noise[TAU_GRID.index(0.9)] = 10
    found = _check(boxes=100, hits=noise, separability=separability)
    assert boxes_decide(found) and choose_tau(found, "auto", 0.3) == (0.9, "boxes")


PAPER_CFG = load_config("synthetic", overrides=PAPER_LOCALIZATION)  # raw target, every cell, fixed τ


def test_advice_names_what_to_change_only_when_degenerate():
    healthy = {"whole": 0.1, "contrast": 0.8, "tau": 0.5}
    assert advice(healthy, PAPER_CFG) is None
    whole = advice({**healthy, "whole": 0.9}, PAPER_CFG)
    assert whole is not None and "cover most of the frame on 90 %" in whole and "localizer_target" in whole
    flat = advice({**healthy, "contrast": 0.3}, PAPER_CFG)
    assert flat is not None and "flat" in flat
    assert advice({**healthy, "iou50": 0.4}, PAPER_CFG) is None
    missing = advice({**healthy, "iou50": 0.014, "tau": 0.9}, PAPER_CFG)
    assert missing is not None and "only 1.4 % of the training images at its best tau 0.9" in missing
    assert "miss the object" in missing and "train.stages" in missing
    per_tau = {"0.5": {"iou50": 0.01}, "0.9": {"iou50": 0.014}}
    by_labels = advice(
        {**healthy, "iou50": 0.01, "tau": 0.5, "tau_select": "labels", "per_tau": per_tau}, PAPER_CFG
    )
    assert by_labels is not None and "at most 1.4 % of the training images at any tau" in by_labels
    assert "tau 0.5 was chosen by class labels" in by_labels


def test_advice_recommends_only_what_the_run_does_not_have_already():
    """Issue 27: the advice recommended loss.localizer_target=standardized, model.box_rule=peak and
    model.tau_select=auto to a run that had all three (the packaged recipes' defaults)."""
    degenerate = {"whole": 0.9, "contrast": 0.8, "tau": 0.5}
    paper = advice(degenerate, PAPER_CFG)
    assert paper is not None
    for change in ("loss.localizer_target=standardized", "model.box_rule=peak", "model.tau_select=auto"):
        assert change in paper
    ours = load_config("synthetic")
    assert (ours.loss.localizer_target, ours.model.box_rule, ours.model.tau_select) == (
        "standardized",
        "peak",
        "auto",
    )
    text = advice(degenerate, ours)
    assert text is not None and "more stages.localizer.epochs" in text
    for setting in ("localizer_target", "box_rule", "tau_select=auto"):
        assert setting not in text, text
    assert "a fixed model.tau above 0.5 (model.tau_select=fixed)" in text
    flat = advice(
        {**degenerate, "whole": 0.1, "contrast": 0.3},
        load_config("synthetic", overrides={"model.box_rule": "all"}),
    )
    assert flat is not None and "model.box_rule=peak" in flat and "localizer_target" not in flat


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("data"))


def _train(data: Path, out: Path, *extra: str, hooks: list | None = None) -> tuple[str, list[dict]]:
    args = tiny_args(data, out, "--stages", "classifier,localizer", *extra)
    result = CliRunner().invoke(main, args, obj={STEP_HOOKS: hooks or []})
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return result.output, [r for r in lines if r.get("event") == "localizer_check"]


def _flatten_hooks(monkeypatch) -> list:
    """Hooks that zero the module's head after every localizer step: a constant map, every box the whole
    frame, IoU >= 0.5 on none of the tiny critters."""
    seen: list = []  # the run's model, remembered at its first training step
    original = loop.train_step

    def remember(learner, *args, **kwargs):  # learner: engine/steps.py: Learner
        seen[:] = [learner.model]
        return original(learner, *args, **kwargs)

    def flatten(state) -> None:
        if state.stage == "localizer":
            for p in seen[0].localizer.head.parameters():
                p.data.zero_()

    monkeypatch.setattr(loop, "train_step", remember)
    return [flatten]


@pytest.mark.slow
def test_a_flat_localizer_is_reported_in_plain_words(tiny_data: Path, tmp_path: Path, monkeypatch):
    """A module whose head is zeroed after every step predicts a constant map: every box is the whole image."""
    output, (record,) = _train(tiny_data, tmp_path / "flat", hooks=_flatten_hooks(monkeypatch))
    assert record["whole"] == 1.0 and record["contrast"] == 0.0 and record["iou50"] == 0.0
    assert "warning: the localization module's boxes cover most of the frame on 100 %" in output
    # the tiny run trains the standardised target with the peak rule and a fixed τ: only τ's rule is advised
    assert "localizer_target" not in record["advice"] and "model.tau_select=auto" in record["advice"]


@pytest.mark.slow
def test_tau_chosen_on_the_training_boxes_goes_into_the_model(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "auto"
    output, (record,) = _train(tiny_data, out, "--set", "model.tau_select=boxes")
    hits = {float(t): v["iou50"] for t, v in record["per_tau"].items()}
    assert record["tau_select"] == "boxes" and record["tau"] in TAU_GRID
    assert hits[record["tau"]] == max(hits.values())
    assert min(t for t, v in hits.items() if v == max(hits.values())) == record["tau"]
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["spec"]["tau"] == record["tau"] and "tau" not in meta  # stored once: the model's spec
    assert f"tau {record['tau']:g} (boxes)" in output


@pytest.mark.slow
def test_auto_chooses_tau_by_labels_where_the_boxes_are_all_missed(
    tiny_data: Path, tmp_path: Path, monkeypatch
):
    """A flat module hits no training box at any τ: ``auto`` measures the labels criterion in a second pass
    and takes its τ, and says so."""
    out = tmp_path / "missed"
    output, (record,) = _train(
        tiny_data, out, "--set", "model.tau_select=auto", hooks=_flatten_hooks(monkeypatch)
    )
    assert max(v["iou50"] for v in record["per_tau"].values()) == 0.0 and record["boxes"] == record["images"]
    tried = {
        float(t): v["separability"] for t, v in record["per_tau"].items() if v["separability"] is not None
    }
    assert set(tried) == set(LABEL_TAUS) and record["tau_select"] == "labels"
    assert tried[record["tau"]] == max(tried.values())
    assert f"tau {record['tau']:g} (labels)" in output and "chosen by class labels" in output


@pytest.mark.slow
def test_tau_chosen_by_class_labels_alone(tiny_data: Path, tmp_path: Path):
    output, (record,) = _train(tiny_data, tmp_path / "labels", "--set", "model.tau_select=labels")
    scores = {float(t): v["separability"] for t, v in record["per_tau"].items()}
    tried = {t: v for t, v in scores.items() if v is not None}
    assert set(tried) == set(LABEL_TAUS) and all(0 <= v <= 1 for v in tried.values())
    assert record["tau_select"] == "labels" and tried[record["tau"]] == max(tried.values())
    assert "untrained backbone" in record["note"] and "untrained backbone" in output  # --no-pretrained
