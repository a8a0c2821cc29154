"""Command-line names match the recipe keys they set; an option renamed for that keeps its old name as a
hidden alias (``docs/architecture.md``, "Command-line names")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from elope.cli import main
from elope.spec import ModelSpec

RENAMED = [  # (command, new name, old name)
    (["train"], "--num-workers", "--workers"),
    (["evaluate"], "--num-workers", "--workers"),
    (["export"], "--crop-source", "--image-size"),
    (["data", "check"], "--threads", "--workers"),
]


@pytest.mark.parametrize(("command", "new", "old"), RENAMED)
def test_renamed_options_show_their_new_name_only(command: list[str], new: str, old: str) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert new in result.output and old not in result.output


def test_train_image_size_is_the_classifier_side() -> None:
    result = CliRunner().invoke(main, ["train", "--help"])
    assert "dataset.image_size" in " ".join(result.output.split())


def test_export_old_option_name_still_sets_the_crop_source(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from elope.deploy.runtime import read_metadata
    from elope.nn.model import ELoPE
    from elope.runs.model_folder import save_model

    torch.manual_seed(0)
    model = ELoPE("resnet18", 2, embedding_dim=8, k=2, spec=ModelSpec(image_size=64, tau=0.3)).eval()
    save_model(model, tmp_path / "run" / "model", {"classes": ["a", "b"]})
    for option, side in (("--crop-source", 48), ("--image-size", 40)):
        out = tmp_path / f"{side}.onnx"
        args = ["export", "--run", str(tmp_path / "run"), "--out", str(out), option, str(side), "--no-check"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        meta = read_metadata(out)
        spec = meta["spec"]
        assert (spec["crop_source"], spec["image_size"], spec["tau"]) == (side, 64, 0.3)
