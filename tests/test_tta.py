"""Test-time augmentation (issue 18 part 3): ``elope evaluate --tta flip`` reports the flip-averaged
accuracies beside the single-view ones, and ``elope export --tta flip`` writes them as one graph whose
outputs equal the eager average. The run is trained on a real layout's fake tree (CUB) with the long-tailed
options of part 4 (``train.sampler=balanced``, ``loss.class_weights=inverse``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fake_datasets import make_fake_cub

from elope.cli import main
from elope.deploy.pipeline import OnePassPipeline
from elope.nn.model import ELoPE
from elope.nn.tta import TTA_VIEWS, check_tta, classify_views, crop_views
from elope.spec import ModelSpec


def _model() -> ELoPE:
    torch.manual_seed(0)
    return ELoPE(
        "resnet18", 4, embedding_dim=8, k=2, spec=ModelSpec(image_size=64, crop_source=96, tau=0.3)
    ).eval()


def test_flip_views_average_the_softmax_and_keep_the_single_view():
    model = _model()
    images = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    views = classify_views(model, images, "flip", return_embeddings=True)
    single = model.classify_crops(images, return_embeddings=True)
    assert torch.equal(views.logits, single.logits) and torch.equal(views.boxes, single.boxes)
    assert torch.equal(views.embeddings, single.embeddings)
    crops, _, _ = model.crop(images)
    with torch.no_grad():
        mirrored, mirrored_emb = model(crops.flip(-1), return_embeddings=True)
    by_hand = (single.logits.softmax(1) + mirrored.softmax(1)) / 2
    torch.testing.assert_close(views.scores, by_hand)
    assert not torch.allclose(views.scores, single.logits.softmax(1))  # the mirror did change something
    unit = torch.nn.functional.normalize
    torch.testing.assert_close(views.view_embeddings, (unit(single.embeddings) + unit(mirrored_emb)) / 2)
    assert torch.equal(crop_views(crops, "flip")[1][..., 0], crops[..., -1])


def test_unknown_views_are_refused():
    assert check_tta(None) is None and check_tta("flip") == "flip" and TTA_VIEWS == ("flip",)
    with pytest.raises(ValueError, match=r"unknown test-time augmentation 'rotate'.*flip"):
        check_tta("rotate")
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        OnePassPipeline(_model(), "five-crop")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier-only run on a fake CUB tree, trained with both long-tailed options."""
    tmp = tmp_path_factory.mktemp("tta")
    root = make_fake_cub(tmp / "cub", 3, train_per_class=4, test_per_class=3, image_size=(64, 48))
    out = tmp / "run"
    args = ["train", "--dataset", "cub", "--root", str(root), "--out", str(out),
            "--backbone", "resnet18", "--no-pretrained", "--image-size", "64", "--batch-size", "4",
            "--epochs", "1", "--workers", "0", "--stages", "classifier",
            "--set", "model.embedding_dim=8", "--set", "train.progress=false",
            "--set", "train.sampler=balanced", "--set", "loss.class_weights=inverse"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


def _evaluate(run: Path, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--json", "-", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_reports_tta_beside_the_single_view(run: Path):
    plain, flipped = _evaluate(run), _evaluate(run, "--tta", "flip")
    assert plain["tta"] is None
    single = ("top1", "mean_per_class", "ncm_top1", "per_class", "num_images")
    assert {k: flipped[k] for k in single} == {k: plain[k] for k in single}  # never instead of it
    tta = flipped["tta"]
    assert tta["views"] == "flip" and set(tta) == {"views", "top1", "mean_per_class", "ncm_top1", "per_class"}
    assert 0.0 <= tta["top1"] <= 1.0 and tta["ncm_top1"] is not None
    assert tta["mean_per_class"] == pytest.approx(sum(tta["per_class"].values()) / len(tta["per_class"]))
    table = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--tta", "flip"])
    assert table.exit_code == 0, table.output
    assert "top-1 accuracy (softmax)" in table.output
    assert f"mean per-class accuracy (flip TTA){100 * tta['mean_per_class']:6.2f} %" in table.output
    bad = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--tta", "rotate"])
    assert bad.exit_code == 2 and "'rotate' is not" in bad.output


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_bakes_the_flip_average_into_one_graph(run: Path, tmp_path: Path, fmt: str):
    pytest.importorskip("onnxruntime")
    from elope.deploy.runtime import ExportedModel
    from elope.runs.loaded import load_run

    out = tmp_path / f"tta.{'onnx' if fmt == 'onnx' else 'pt'}"
    args = [
        "export",
        "--run",
        str(run),
        "--format",
        fmt,
        "--out",
        str(out),
        "--batch",
        "dynamic",
        "--tta",
        "flip",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (
        "scores averaged over the flip views" in result.output
        and "check, batch 3: top-1 equal True" in result.output
    )
    exported = ExportedModel(out)
    assert exported.tta == "flip"
    model = load_run(run, "cpu").model.eval()
    images = torch.randn(5, 3, exported.spec.crop_source, exported.spec.crop_source)
    scores = exported.run(images)[0]
    with torch.no_grad():
        eager, single = OnePassPipeline(model, "flip")(images)[0], OnePassPipeline(model)(images)[0]
    torch.testing.assert_close(scores, eager, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(scores, single, rtol=1e-4, atol=1e-5)  # the mirror is in the graph


@pytest.mark.parametrize("layout", ["cars", "aircraft", "folder"])
def test_long_tailed_options_and_tta_on_the_other_layouts(layout: str, request: pytest.FixtureRequest):
    """The other real layouts' fake trees: train with both long-tailed options, evaluate with flip TTA."""
    root = request.getfixturevalue(f"fake_{layout}")
    out = root.parent / "run"
    args = ["train", "--dataset", layout, "--root", str(root), "--out", str(out),
            "--backbone", "resnet18", "--no-pretrained", "--image-size", "64", "--batch-size", "4",
            "--epochs", "1", "--workers", "0", "--stages", "classifier",
            "--set", "model.embedding_dim=8", "--set", "train.progress=false",
            "--set", "train.sampler=balanced", "--set", "loss.class_weights=sqrt_inverse"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = _evaluate(out, "--tta", "flip")
    assert metrics["tta"]["views"] == "flip" and metrics["num_images"] > 0
    assert set(metrics["tta"]["per_class"]) == set(metrics["per_class"])


def test_tta_with_an_exported_file_is_refused_with_the_export_to_use(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"unused: refused before loading")
    args = ["evaluate", "--model", str(tmp_path / "model.onnx"), "--dataset", "synthetic"]
    result = CliRunner().invoke(main, [*args, "--root", str(tmp_path), "--tta", "flip"])
    assert result.exit_code == 2 and "elope export --tta flip" in result.output


def test_export_with_tta_and_the_embedding_returns_both(run: Path, tmp_path: Path):
    """``--tta flip --embedding``: flip-averaged scores and the embedding of the crop itself, one graph."""
    pytest.importorskip("onnxruntime")
    from elope.deploy.runtime import ExportedModel
    from elope.runs.loaded import load_run

    out = tmp_path / "both.onnx"
    args = [
        "export",
        "--run",
        str(run),
        "--out",
        str(out),
        "--batch",
        "dynamic",
        "--tta",
        "flip",
        "--embedding",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    exported = ExportedModel(out)
    assert exported.tta == "flip" and exported.outputs[-1] == "embeddings"
    model = load_run(run, "cpu").model.eval()
    images = torch.randn(3, 3, exported.spec.crop_source, exported.spec.crop_source)
    outputs = exported.run(images)
    with torch.no_grad():
        flipped = OnePassPipeline(model, "flip", embeddings=True)(images)
        single = OnePassPipeline(model, embeddings=True)(images)
    torch.testing.assert_close(outputs[0], flipped[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outputs[-1], single[-1], rtol=1e-4, atol=1e-4)
