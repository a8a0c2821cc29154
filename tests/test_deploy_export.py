"""``elope export`` and running the exported pipeline (Fig. 1 as one graph): ONNX through onnxruntime,
TorchScript through plain ``torch.jit.load`` in a process that never imports elope. On the procedural set,
the exported graph must give the same top-1 on every test image as :meth:`elope.ELoPE.predict`, scores
within 1e-4 (relative) and boxes within 0.5 px, at batch 1 and with a dynamic batch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from serve_helpers import SOURCE, TAU, varied_model

from elope.cli import main
from elope.data import build_dataset, eval_transform
from elope.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from elope.deploy.check import compare_outputs
from elope.deploy.export import export_model
from elope.deploy.pipeline import OnePassPipeline
from elope.deploy.runtime import ExportedModel, read_metadata
from elope.nn.model import ELoPE
from elope.runs.model_folder import save_model
from elope.spec import SPEC_FIELDS, ModelSpec
from elope.tasks.predict import predict_paths


def _test_images(root: Path) -> torch.Tensor:
    transform = eval_transform(SOURCE, IMAGENET_MEAN, IMAGENET_STD)
    ds = build_dataset("synthetic", root, "test", transform=transform)
    return torch.stack([ds[i][0] for i in range(len(ds))]).as_subclass(torch.Tensor)


@pytest.fixture(scope="module")
def setup(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run folder, its test images, and the model exported four ways through `elope export`."""
    images = _test_images(synthetic_root)
    model = varied_model(images)
    run = tmp_path_factory.mktemp("run")
    classes = build_dataset("synthetic", synthetic_root, "test").classes
    save_model(
        model, run / "model", {"classes": classes, "dataset": "synthetic", "root": str(synthetic_root)}
    )
    out = tmp_path_factory.mktemp("exported")
    files = {}
    runner = CliRunner()
    for fmt, batch in [("onnx", "1"), ("onnx", "dynamic"), ("torchscript", "1"), ("torchscript", "dynamic")]:
        path = out / f"{fmt}-{batch}.{'onnx' if fmt == 'onnx' else 'pt'}"
        args = ["export", "--run", str(run), "--format", fmt, "--out", str(path), "--batch", batch]
        if (fmt, batch) != ("onnx", "dynamic"):
            args.append("--no-check")  # the self-check runs once, on the dynamic ONNX file
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        files[fmt, batch] = path
        if (fmt, batch) == ("onnx", "dynamic"):
            assert "check, batch 3: top-1 equal True" in result.output
    return {"model": model, "images": images, "run": run, "files": files, "classes": classes}


def _check(reference: tuple, exported: list, images: int) -> None:
    report = compare_outputs(reference, exported, tau=TAU, margin=0.0)
    assert report["images"] == images and report["boxes_compared"] == images
    assert report["top1_equal"], report
    assert report["scores_max_rel"] <= 1e-4, report
    assert report["boxes_max_px"] <= 0.5, report
    assert report["heatmaps_max_abs"] <= 1e-4, report


def test_model_gives_varied_boxes_and_classes(setup: dict) -> None:
    """The equality tests below are only worth something if the boxes and top-1 classes vary."""
    pred = setup["model"].predict(setup["images"])
    boxes = pred.boxes.tolist()
    assert any(b != [0.0, 0.0, SOURCE, SOURCE] for b in boxes)
    assert len({tuple(b) for b in boxes}) >= 4
    assert len(set(pred.classes[:, 0].tolist())) >= 2


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_equals_predict_batch1_and_dynamic(setup: dict, fmt: str) -> None:
    model, images = setup["model"], setup["images"]
    pred = model.predict(images, top=3)
    reference = OnePassPipeline(model)(images)
    # the pipeline is predict without the top-k
    assert torch.equal(reference[0].topk(3, dim=1).indices, pred.classes)
    assert torch.equal(reference[1], pred.boxes)
    n = images.shape[0]
    one = ExportedModel(setup["files"][fmt, "1"])
    per_image = [one.run(images[i : i + 1]) for i in range(n)]
    _check(reference, [torch.cat(outs) for outs in zip(*per_image)], n)
    dynamic = ExportedModel(setup["files"][fmt, "dynamic"])
    _check(reference, dynamic.run(images), n)
    _check(reference, one.run(images), n)  # a fixed-batch file runs a larger batch in chunks
    exported = dynamic.predict(images, top=3)
    assert torch.equal(exported.classes[:, 0], pred.classes[:, 0])


def test_metadata_carries_what_predict_needs(setup: dict) -> None:
    for (fmt, batch), path in setup["files"].items():
        meta = read_metadata(path)
        assert meta["classes"] == setup["classes"]
        spec = meta["spec"]
        assert spec["mean"] == pytest.approx(IMAGENET_MEAN) and spec["std"] == pytest.approx(IMAGENET_STD)
        assert spec["crop_source"] == SOURCE and spec["image_size"] == 64 and spec["tau"] == TAU
        assert ModelSpec.from_dict(spec) == setup["model"].spec  # written by to_dict, as in model.json
        assert not set(SPEC_FIELDS) & (set(meta) | set(meta["model"]))  # the spec once, under spec
        assert meta["batch"] == ("dynamic" if batch == "dynamic" else 1)
        assert meta["outputs"] == ["scores", "boxes", "heatmaps"] and meta["exported_as"] == fmt


def test_torchscript_runs_without_elope(setup: dict, tmp_path: Path) -> None:
    """Plain torch + torchvision (for the roi_align operator), in a fresh interpreter that never imports
    elope: the same outputs as PyTorch, metadata read from the extra file."""
    images = setup["images"]
    torch.save(images, tmp_path / "images.pt")
    script = textwrap.dedent(
        """
        import json, sys
        import torch, torchvision  # torchvision registers torchvision::roi_align
        images = torch.load(sys.argv[1])
        outputs = {}
        for name, path in (("one", sys.argv[2]), ("dynamic", sys.argv[3])):
            extra = {"elope.json": ""}
            module = torch.jit.load(path, _extra_files=extra)
            meta = json.loads(extra["elope.json"])
            assert meta["spec"]["crop_source"] == images.shape[-1], meta
            with torch.inference_mode():
                if name == "one":
                    parts = [module(images[i : i + 1]) for i in range(images.shape[0])]
                    outputs[name] = [torch.cat(p) for p in zip(*parts)]
                else:
                    outputs[name] = list(module(images))
        assert not any(m == "elope" or m.startswith("elope.") for m in sys.modules), "elope was imported"
        torch.save(outputs, sys.argv[4])
        """
    )
    files = setup["files"]
    result = tmp_path / "outputs.pt"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "images.pt"),
            str(files["torchscript", "1"]),
            str(files["torchscript", "dynamic"]),
            str(result),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = torch.load(result)
    reference = OnePassPipeline(setup["model"])(images)
    for name in ("one", "dynamic"):
        _check(reference, outputs[name], images.shape[0])


def test_torchscript_refuses_another_input_size(setup: dict) -> None:
    module = ExportedModel(setup["files"]["torchscript", "dynamic"]).module
    with pytest.raises(torch.jit.Error, match=f"expected normalised images \\(B, 3, {SOURCE}, {SOURCE}\\)"):
        module(torch.zeros(1, 3, SOURCE + 1, SOURCE))


def test_predict_model_equals_run(setup: dict, synthetic_root: Path) -> None:
    """`elope predict --model FILE` reads and resizes images as `--run RUN` does: same classes, scores
    and boxes (in original pixels)."""
    folder = next((synthetic_root / "CUB_200_2011" / "images").iterdir())
    reference = predict_paths(setup["run"], [folder], top=3)
    for key in [("onnx", "1"), ("torchscript", "dynamic")]:
        exported = predict_paths(None, [folder], top=3, model=setup["files"][key])
        assert [r["path"] for r in exported] == [r["path"] for r in reference]
        for ours, theirs in zip(exported, reference):
            assert [c["index"] for c in ours["classes"]] == [c["index"] for c in theirs["classes"]]
            assert [c["class"] for c in ours["classes"]] == [c["class"] for c in theirs["classes"]]
            for a, b in zip(ours["classes"], theirs["classes"]):
                assert a["score"] == pytest.approx(b["score"], rel=1e-4)
            assert ours["box"] == pytest.approx(theirs["box"], abs=0.5)
            assert ours["size"] == theirs["size"]


def test_predict_cli_with_model(setup: dict, synthetic_root: Path) -> None:
    folder = next((synthetic_root / "CUB_200_2011" / "images").iterdir())
    onnx_file = str(setup["files"]["onnx", "dynamic"])
    runner = CliRunner()
    result = runner.invoke(main, ["predict", "--model", onnx_file, str(folder), "--top", "2", "--json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert items and all(len(item["classes"]) == 2 for item in items)
    result = runner.invoke(main, ["predict", "--model", onnx_file, str(folder), "--tau", "0.5"])
    assert result.exit_code != 0 and "fixed in the exported graph" in result.output
    result = runner.invoke(main, ["predict", str(folder)])
    assert result.exit_code != 0 and "either --run RUN or --model FILE" in result.output


def test_whole_image_fallback_and_upsampled_heatmap(setup: dict, tmp_path: Path) -> None:
    """A constant heatmap gives the whole image in the exported graph too; the optional heatmap upsampling
    before thresholding exports as well."""
    images = setup["images"][:3]
    flat = ELoPE(
        "resnet18", 3, embedding_dim=16, k=2, spec=ModelSpec(image_size=64, crop_source=SOURCE, tau=TAU)
    ).eval()
    with torch.no_grad():
        flat.localizer.head.weight.zero_()
    upsampled = varied_model(setup["images"])
    upsampled.spec = upsampled.spec.replace(heatmap_upsample=True)  # what ELoPE.localize reads
    for name, model in (("flat", flat), ("upsampled", upsampled)):
        path = export_model(
            model,
            tmp_path / f"{name}.onnx",
            classes=["a", "b", "c"],
            batch=None,
        )
        reference = OnePassPipeline(model)(images)
        outputs = ExportedModel(path).run(images)
        _check(reference, outputs, 3)
        if name == "flat":
            assert outputs[1].tolist() == [[0.0, 0.0, SOURCE, SOURCE]] * 3


@pytest.mark.parametrize("upsample", [False, True])
def test_peak_box_rule_exports_as_one_graph(setup: dict, tmp_path: Path, upsample: bool) -> None:
    """The peak rule's region growing is unrolled into the graph (no value-dependent branch): ONNX and
    TorchScript give PyTorch's boxes on every test image, with a dynamic batch."""
    images = setup["images"]
    model = varied_model(images)
    model.spec = model.spec.replace(box_rule="peak", heatmap_upsample=upsample)
    reference = OnePassPipeline(model)(images)
    if not upsample:  # the rule matters for these images
        assert not torch.equal(reference[1], OnePassPipeline(varied_model(images))(images)[1])
    for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt")):
        path = export_model(
            model,
            tmp_path / f"peak.{suffix}",
            classes=["a", "b", "c"],
            batch=None,
            fmt=fmt,
        )
        _check(reference, ExportedModel(path).run(images), len(images))


def test_export_raises_no_warning_of_ours(setup: dict, tmp_path: Path) -> None:
    """Issue 27: every export printed two UserWarnings of elope.nn.upsampled_threshold (``torch.tensor`` of a
    size that tracing makes a tensor). Warnings raised from elope's own modules are errors here."""
    model = varied_model(setup["images"])
    model.spec = model.spec.replace(box_rule="peak", heatmap_upsample=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"elope(\.|$)")
        for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt")):
            export_model(model, tmp_path / f"quiet.{suffix}", classes=["a", "b", "c"], fmt=fmt)


def test_run_folder_and_exported_file_are_one_kind_of_predictor(setup: dict) -> None:
    """LoadedRun and ExportedModel satisfy elope.evaluation.predictor.Predictor with the same spec (the file's
    read back from its metadata) and the same predictions."""
    from elope.evaluation.predictor import Predictor
    from elope.runs.loaded import load_run

    run, exported = load_run(setup["run"]), ExportedModel(setup["files"]["onnx", "dynamic"])
    assert isinstance(run, Predictor) and isinstance(exported, Predictor)
    assert exported.spec == run.spec == setup["model"].spec
    assert exported.classes == run.classes
    images = setup["images"]
    ours, theirs = run.predict(images, top=2), exported.predict(images, top=2)
    assert torch.equal(ours.classes, theirs.classes)
    torch.testing.assert_close(ours.boxes, theirs.boxes, rtol=0, atol=0.5)
