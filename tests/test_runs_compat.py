"""A run folder written by elope 0.1.0 (before the package was layered) loads, evaluates and predicts
exactly as it did then.

``tests/fixtures/run_v0_1_0`` is ``RUN/model``, ``RUN/teacher``, ``config.yaml`` and ``metrics.jsonl`` of
a 4-stage run of the main branch at b43a98e (``elope train --dataset synthetic --backbone
test_efficientnet --no-pretrained --image-size 64 --batch-size 4 --epochs 1``, 980 kB), with
``expected.json``: the metrics of ``evaluate_run(..., mean_map=True)`` on the test split and the
predictions of 4 images, computed by that code. The data set is regenerated here (same arguments, same
bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from elope.runs import load_run
from elope.tasks.evaluate import evaluate_run
from elope.tasks.predict import predict_paths

pytest.importorskip("timm")  # the run's backbone is timm's test_efficientnet

RUN = Path(__file__).parent / "fixtures" / "run_v0_1_0"
EXPECTED = json.loads((RUN / "expected.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from elope.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("old"), classes=3, train=6, test=2, size=64, seed=0)


def test_old_run_loads_with_its_tau_and_size_from_the_model_config():
    run = load_run(RUN)
    saved = json.loads((RUN / "model" / "model.json").read_text())
    assert saved["version"] == 1 and "model" in saved
    assert run.spec.tau == saved["model"]["tau"] == saved["tau"]
    assert run.spec.image_size == saved["model"]["image_size"] == saved["image_size"]
    # version 1 kept the crop source and the normalisation at the top level; keys added since 0.1.0 take
    # the value that reproduces 0.1.0's behaviour
    assert (run.spec.crop_source, list(run.spec.mean), list(run.spec.std)) == (
        saved["crop_source"],
        saved["mean"],
        saved["std"],
    )
    moved = {k: saved[k] for k in ("crop_source", "mean", "std")}
    described = {**dict(run.model.config), **run.spec.to_dict()}
    assert described == {**saved["model"], **moved, "box_rule": "all", "box_margin": 0.0}
    assert run.means is not None and run.load_teacher() is not None


def test_old_run_evaluates_as_before(data: Path):
    result = evaluate_run(RUN, "synthetic", data, split="test", progress=False, mean_map=True)
    assert {k: result[k] for k in EXPECTED["evaluate_test"]} == EXPECTED["evaluate_test"]


def test_old_run_predicts_as_before(data: Path):
    expected = EXPECTED["predict"]
    got = predict_paths(RUN, [data / item["path"] for item in expected], top=3)
    for item, want in zip(got, expected):
        assert [c["class"] for c in item["classes"]] == [c["class"] for c in want["classes"]]
        torch.testing.assert_close(
            torch.tensor([c["score"] for c in item["classes"]]),
            torch.tensor([c["score"] for c in want["classes"]]),
            rtol=1e-5,
            atol=1e-6,
        )
        torch.testing.assert_close(torch.tensor(item["box"]), torch.tensor(want["box"]), rtol=0, atol=1e-3)
        assert item["size"] == want["size"]


def test_old_run_through_the_command_line(data: Path):
    from click.testing import CliRunner

    from elope.cli import main

    result = CliRunner().invoke(
        main, ["evaluate", "--run", str(RUN), "--dataset", "synthetic", "--root", str(data), "--json", "-"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{") :])["top1"] == EXPECTED["evaluate_test"]["top1"]
