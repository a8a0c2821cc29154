"""``elope train`` end to end on a tiny generated set: every stage, the run folder, evaluate and predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from train_helpers import tiny_args, write_tiny_synthetic

from elope.cli import main
from elope.runs.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def full_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("runs") / "run"
    result = CliRunner().invoke(main, tiny_args(data, out), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_all_stages_write_the_run_folder_of_the_contract(full_run):
    out, log = full_run
    for name in ("config.yaml", "metrics.jsonl", "model/model.safetensors", "model/model.json",
                 "model/class_means.safetensors", "checkpoints/last.pt"):  # fmt: skip
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    for stage in ("classifier", "localizer", "crop", "weighted"):
        assert (out / "checkpoints" / f"{stage}.pt").is_file()
        assert f"[{stage}] epoch 1" in log

    header, *lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in lines if "event" not in r]  # one per epoch and stage
    # the end of stage 2: the module checked on the training split, at the recipe's fixed tau
    (check,) = [r for r in lines if r.get("event") == "localizer_check"]
    assert lines.index(check) == 2 and check["tau"] == 0.3 and check["tau_select"] == "fixed"
    assert check["images"] == 15 and 0 <= check["whole"] <= 1 and 0 <= check["contrast"] <= 1
    # the first line names the splits the run used (the tiny recipe holds out val_fraction 0.1)
    assert header["event"] == "data" and header["classes"] == 3
    assert header["train"] == {"split": "train", "images": 15} and header["val"] == {
        "split": "val",
        "images": 3,
    }
    assert [r["stage"] for r in records] == ["classifier", "localizer", "crop", "weighted"]
    expected = {"lr", "train_loss", "train_ce", "train_le", "train_acc", "val_top1", "images_per_s"}
    assert expected <= set(records[0])
    assert {"train_loss", "val_loss", "val_loc_iou50"} <= set(records[1]) and "val_top1" not in records[1]
    assert all(r["images_per_s"] > 0 for r in records)

    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["model"]["weighted"] is True and meta["model"]["localizer"] is True
    assert meta["localized"] is True and meta["stages"] == ["classifier", "localizer", "crop", "weighted"]
    assert len(meta["classes"]) == 3 and meta["spec"]["image_size"] == 64 and meta["spec"]["tau"] == 0.3
    assert meta["splits"] == {k: header[k] for k in ("train", "val")} and meta["spec"]["crop_source"] == 128
    teacher = json.loads((out / "teacher" / "model.json").read_text())  # stage 1, the module's teacher
    assert teacher["model"]["localizer"] is False and teacher["stages"] == ["classifier"]
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["completed"] == meta["stages"] and last["stage"] is None


@pytest.mark.slow
def test_stage_results_follow_the_recipe(full_run):
    """Stage 2 trains only the localizer; stage 4 starts the weights of Eq. (4) at ones and trains them."""
    out, _ = full_run
    cls, loc, crop, weighted = (load_checkpoint(out / "checkpoints" / f"{s}.pt")["model"]
                                for s in ("classifier", "localizer", "crop", "weighted"))  # fmt: skip
    changed = [k for k in cls if not torch.equal(cls[k], loc[k])]
    assert changed and all(k.startswith("localizer.") for k in changed)
    assert "pool.weights" not in crop and "pool.weights" in weighted
    assert not torch.equal(weighted["pool.weights"], torch.ones(4))
    # frozen after stage 2
    assert torch.equal(crop["localizer.head.weight"], weighted["localizer.head.weight"])


@pytest.mark.slow
def test_evaluate_and_predict_read_the_run(full_run, data, tmp_path):
    from elope.tasks.evaluate import evaluate_run
    from elope.tasks.predict import predict_paths

    out, _ = full_run
    result = evaluate_run(out, progress=False)
    assert result["num_images"] == 6 and result["split"] == "test"
    assert result["ncm_top1"] is not None and result["loc_iou50"] is not None
    images = sorted((data / "CUB_200_2011" / "images").rglob("*.jpg"))[:2]
    preds = predict_paths(out, images, top=2, save_vis=tmp_path / "vis")
    assert len(preds) == 2 and all(Path(p["vis"]).is_file() for p in preds)


@pytest.mark.slow
def test_classifier_only_exports_a_model_without_the_untrained_localizer(data, tmp_path):
    """Also runs the GPU options on the CPU: bf16 autocast and channels_last."""
    out = tmp_path / "run"
    options = ("--set", "loss.variant=none", "--set", "train.amp=bf16", "--set", "train.channels_last=true")
    result = CliRunner().invoke(main, tiny_args(data, out, "--stages", "classifier", *options))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["model"]["localizer"] is False and meta["localized"] is False
    assert not (out / "model" / "class_means.safetensors").exists()  # variant none: no means, no NCM


@pytest.mark.slow
def test_run_folder_errors_and_another_architecture(full_run, data, tmp_path):
    runner = CliRunner()
    out, _ = full_run
    needs = runner.invoke(main, tiny_args(data, tmp_path / "new", "--stages", "localizer"))
    assert needs.exit_code != 0 and "needs the 'classifier' stage first" in needs.output
    assert "Traceback" not in needs.output

    again = runner.invoke(main, tiny_args(data, out, "--stages", "classifier"))
    assert again.exit_code != 0 and "--resume" in again.output

    other = runner.invoke(main, ["train", "--out", str(out), "--resume", "--set", "model.embedding_dim=16",
                                 "--backbone", "resnet34"])  # fmt: skip
    assert other.exit_code != 0, other.output
    assert "--resume would change the recipe" in other.output  # every key named, with both values
    assert "model.backbone 'resnet18' -> 'resnet34'" in other.output
    assert "model.embedding_dim 32 -> 16" in other.output
    assert "Traceback" not in other.output

    done = runner.invoke(main, ["train", "--out", str(out), "--resume"])
    assert done.exit_code == 0 and "none (all done)" in done.output

    sync = runner.invoke(main, tiny_args(data, tmp_path / "sync", "--set", "train.sync_bn=true"))
    assert sync.exit_code != 0 and "sync_bn needs CUDA" in sync.output

    nothing = runner.invoke(main, ["train", "--out", str(tmp_path / "empty"), "--resume"])
    assert nothing.exit_code != 0 and "nothing to resume" in nothing.output


@pytest.mark.slow
def test_demo_command_wiring(tmp_path):
    """``elope demo`` with 0 epochs: generates the set, runs the stages and the GAP baseline, prints the
    table, draws pictures (the real ImageNet Lite0 of the package, untrained on the set)."""
    out = tmp_path / "demo"
    small = ["--set", "dataset.synthetic.classes=3", "--set", "dataset.synthetic.train=4", "--set",
             "dataset.synthetic.test=2", "--set", "dataset.synthetic.size=64", "--set", "dataset.image_size=64",
             "--set", "dataset.crop_source=null"]  # fmt: skip
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--epochs", "0", "--pictures", "2", *small])
    assert result.exit_code == 0, result.output
    for row in ("GAP baseline", "whole images (stage 1)", "localization crops (stage 3)", "ELoPE"):
        assert row in result.output, row
    assert "IoU >= 0.5" in result.output
    # training's own lines go where the demo's table goes (issue 27: they were on standard error only)
    assert "[localizer] check on" in result.stdout and "[localizer] check on" not in result.stderr
    results = json.loads((out / "demo_results.json").read_text())
    assert set(results) == {"gap", "teacher", "crop", "full"} and results["full"]["loc_iou50"] is not None
    assert len(list((out / "predictions").glob("*.png"))) == 2 and (out / "examples_test.png").is_file()


def test_demo_reference_is_the_shipped_multi_seed_json(tmp_path):
    """The demo prints the multi-seed reference from the JSON the package ships (written by
    elope/research/experiments/demo_seeds.py), and says so when it is missing."""
    from elope.tasks.demo import REFERENCE, prediction_interval, reference_text

    shipped = json.loads(REFERENCE.read_text())
    assert len(shipped["seeds"]) >= 3 and len(shipped["full"]["runs"]) == len(shipped["seeds"])
    text = reference_text()
    assert f"across {len(shipped['seeds'])} seeds" in text
    assert f"ELoPE {shipped['full']['mean']:.1f} ± {shipped['full']['std']:.1f} %" in text
    low, high = shipped["full_minus_gap"][1:]
    assert f"[95 % CI {low:+.1f}, {high:+.1f}]" in text
    assert f"module {min(shipped['module']['runs']):.1f}-{max(shipped['module']['runs']):.1f} %" in text
    assert "no multi-seed reference" in reference_text(tmp_path / "missing.json")
    # what a new run should land in: the prediction interval of one more run, from the shipped seeds
    low, high = prediction_interval(shipped["full"]["runs"])
    assert f"ELoPE {low:.0f} to {min(high, 100):.0f} %" in text


def test_prediction_interval_by_hand():
    """[1, 2, 3]: mean 2, sd 1, t(0.975, 2) = 4.303; half-width 4.303 * sqrt(4/3) = 4.968."""
    from elope.tasks.demo import prediction_interval

    low, high = prediction_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.968, abs=1e-3) and high == pytest.approx(2 + 4.968, abs=1e-3)
    assert prediction_interval([99.0, 100.0, 100.0])[1] == 100.0


@pytest.mark.slow
def test_predict_json_and_evaluate_predictions_agree(full_run, data, tmp_path):
    """One crop path: `elope predict --json` and `evaluate --predictions` give the same top-1 and boxes."""
    out, _ = full_run
    lines = tmp_path / "pred.jsonl"
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", "--run", str(out), "--predictions", str(lines)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) >= {"path", "true", "classes", "box", "gt_box"}
    assert all(len(r["classes"]) == 3 for r in rows)  # top-5 of 3 classes
    res = runner.invoke(main, ["predict", "--run", str(out), "--json", *[r["path"] for r in rows]])
    assert res.exit_code == 0, res.output
    preds = {p["path"]: p for p in json.loads(res.stdout)}
    for r in rows:
        p = preds[r["path"]]
        assert p["classes"][0]["class"] == r["classes"][0]["class"]
        assert p["box"] == pytest.approx(r["box"], abs=1.0)  # within one pixel of the original image
        assert p["size"] == r["size"]


@pytest.mark.slow
def test_the_crop_stage_can_start_fresh(data, tmp_path):
    """`stages.crop.init: fresh` (the release): backbone, heads and class means as a new run draws them,
    the trained localization module kept."""
    from elope.config import load_config
    from elope.engine.run_spec import run_spec
    from elope.engine.sampling import seed_everything
    from elope.engine.stages import make_model_and_loss

    out = tmp_path / "run"
    args = tiny_args(data, out, "--stages", "classifier,localizer,crop", "--set", "stages.crop.init=fresh")
    at = args.index("--epochs")  # every stage one epoch, the crop stage none: its start is its result
    args[at : at + 2] = ["--set", "stages.classifier.epochs=1", "--set", "stages.localizer.epochs=1",
                         "--set", "stages.crop.epochs=0"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    crop = load_checkpoint(out / "checkpoints" / "crop.pt")
    loc = load_checkpoint(out / "checkpoints" / "localizer.pt")["model"]
    cfg = load_config(config_file=None, base=yaml.safe_load((out / "config.yaml").read_text()))
    seed_everything(cfg.train.seed + 1 + 2)  # what run_stage seeds before the crop stage begins
    fresh, criterion = make_model_and_loss(cfg, 3, run_spec(cfg))
    for key, value in fresh.state_dict().items():
        expected = loc[key] if key.startswith("localizer.") else value
        assert torch.equal(crop["model"][key], expected), key
    assert torch.equal(crop["criterion"]["means"], criterion.means)
    assert not torch.equal(loc["classifier.weight"], crop["model"]["classifier.weight"])


def test_aircraft_trains_on_trainval(fake_aircraft, tmp_path):
    """The paper's recipes train on the whole training split: FGVC-Aircraft's trainval (train + val)."""
    out = tmp_path / "run"
    args = ["train", "--dataset", "aircraft", "--root", str(fake_aircraft), "--out", str(out),
            "--backbone", "resnet18", "--no-pretrained", "--image-size", "64", "--batch-size", "4",
            "--epochs", "1", "--workers", "0", "--stages", "classifier",
            "--set", "model.embedding_dim=16", "--set", "train.progress=false"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "train on 'trainval' (20 images); no validation split" in result.output
    header = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert header["train"] == {"split": "trainval", "images": 20} and header["val"] is None
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["splits"] == {"train": {"split": "trainval", "images": 20}, "val": None}
