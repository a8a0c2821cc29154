"""The profile command reproduces Table 3 with a maintained FLOP counter."""

import json

import pytest
from click.testing import CliRunner

from elope.cli import main
from elope.tasks.profile import PAPER_TABLE3, profile_models


@pytest.fixture(scope="module")
def resnet50_profile():
    return profile_models("resnet50", 200, 448)


def test_table3_within_tolerance(resnet50_profile):
    for model in ("baseline", "elope"):
        for key in ("macs", "params"):
            paper = PAPER_TABLE3[model][key]
            assert abs(resnet50_profile[model][key] / paper - 1) < 0.015, (model, key)
    assert abs(resnet50_profile["localization"]["params"] / 220e3 - 1) < 0.05
    ratio = resnet50_profile["elope"]["macs"] / resnet50_profile["baseline"]["macs"]
    assert 1.0 < ratio < 1.01  # the paper: 1.654 / 1.648 = 1.0036


def test_cli_json_for_another_backbone_and_size():
    result = CliRunner().invoke(
        main, ["profile", "--backbone", "resnet18", "--num-classes", "10", "--image-size", "224", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"baseline", "elope", "localization"}
    assert all(isinstance(data[m][k], int) for m in data for k in ("macs", "params"))
    # ResNet-18 at 224: ~1.82 GMACs (torchvision's model card)
    assert 1.7e9 < data["baseline"]["macs"] < 1.9e9
    assert data["elope"]["macs"] > data["baseline"]["macs"] + data["localization"]["macs"] * 0.9


def test_cli_table():
    result = CliRunner().invoke(main, ["profile", "--backbone", "resnet18", "--image-size", "64"])
    assert result.exit_code == 0 and "ELoPE / baseline" in result.output
