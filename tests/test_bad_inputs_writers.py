"""Bad inputs, second round (issue 21, docs/reliability.md): what happens to a run folder and to the answers
a run gives.

One writer per run folder, a resume that keeps its recipe (and records an allowed change), a
``metrics.jsonl`` cut in the middle of a record, no model with NaN weights, no ``val`` that is training
data, no unfinished run used as a finished one, every output path checked before the work, and one line
instead of a traceback or a hang for devices, exported files, ``model.json``, FIFOs and SIGTERM. One tiny
run (ResNet-18 at 40 px on a fake CUB, classifier and localizer, 1 epoch each) is trained once and copied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from bad_inputs import assert_clean_exit, copy_run, deadline, error_lines, invoke, tree_hash
from fake_datasets import make_fake_cub
from PIL import Image
from safetensors.torch import load_file, save_file
from train_helpers import run_cli, tiny_args

STAGES = ("--stages", "classifier,localizer")


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_args(root, out, "--image-size", "40", *extra)


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_cub(tmp_path_factory.mktemp("cub") / "cub")


@pytest.fixture(scope="module")
def trained(cub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert_clean_exit(invoke(*_args(cub, out, *STAGES)), 0, "done:")
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return copy_run(trained, tmp_path / "run")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    return path


def _unwritable() -> Path:
    """A folder this process cannot write in, whoever runs the suite (root included): /sys."""
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(name)
    pytest.skip("/sys is writable here")


# ------------------------------------------------------------------------------ one writer per run folder
def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds the run folder's lock, as a running `elope train` does."""
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()} elope train\\n'.encode()); "
        "print('locked', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder / ".elope.lock")], stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"locked"
    return holder


def test_one_writer_per_run_folder(run: Path, cub: Path, tmp_path: Path) -> None:
    holder = _hold_lock(run)
    busy = f"is in use by process {holder.pid} (elope train)"
    try:
        before = tree_hash(run)
        assert_clean_exit(invoke("train", "--out", run, "--resume"), 1, busy)
        assert_clean_exit(invoke(*_args(cub, run, *STAGES, "--force")), 1, busy)  # nothing deleted under it
        assert_clean_exit(invoke("evaluate", "--run", run, "--json", run / "m.json"), 1, busy)
        assert_clean_exit(invoke("export", "--run", run, "--out", run / "m.onnx", "--no-check"), 1, busy)
        assert tree_hash(run) == before
        elsewhere = invoke("evaluate", "--run", run, "--json", tmp_path / "m.json")  # readers take no lock
        assert_clean_exit(elsewhere, 0, "top-1")
    finally:
        holder.kill()
        holder.wait()
    assert (run / ".elope.lock").is_file()  # left by the killed holder: it blocks nothing
    assert_clean_exit(invoke("train", "--out", run, "--resume"), 0, "none (all done)")
    assert not (run / ".elope.lock").exists()


# -------------------------------------------------------------------------- a resume keeps its recipe
@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("--set", "loss.lambda=1.0"), "loss.lambda 2.0 -> 1.0"),
        (("--epochs", "2", "--batch-size", "4"), "stages.classifier.epochs 1 -> 2"),
        (
            ("--set", "stages.classifier.lr=0.1", "--allow-change", "stages.classifier.lr"),
            "stages.classifier.lr (stage classifier has run)",
        ),
        (("--allow-change", "stages.crop.epochz"), "--allow-change 'stages.crop.epochz': no such recipe key"),
    ],
)
def test_resume_refuses_a_changed_recipe(change: tuple[str, ...], needle: str, run: Path) -> None:
    before = tree_hash(run)
    result = invoke("train", "--out", run, "--resume", *change)
    assert_clean_exit(result, 1, needle)
    assert len(error_lines(result)) == 1 and tree_hash(run) == before


def test_allowed_change_is_recorded_and_a_broken_record_is_cut(run: Path) -> None:
    metrics = run / "metrics.jsonl"
    text = metrics.read_text()
    lines = len(text.splitlines())
    metrics.write_text(text[:-20])  # killed in the middle of the last record
    crop = ("--set", "stages.crop.lr=0.001", "--set", "stages.crop.epochs=0", "--allow-change", "stages.crop")
    result = invoke("train", "--out", run, "--resume", "--stages", "classifier,localizer,crop", *crop)
    assert_clean_exit(result, 0, f"line {lines} is not a whole record", "stages.crop.lr 0.03 -> 0.001")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]  # every line whole
    assert len(records) == lines and records[-1]["event"] == "recipe_change"  # appended after the cut
    assert records[-1]["changed"] == {
        "stages.crop.epochs": {"from": 1, "to": 0},
        "stages.crop.lr": {"from": 0.03, "to": 0.001},
    }
    assert yaml.safe_load((run / "config.yaml").read_text())["stages"]["crop"]["lr"] == 0.001
    assert json.loads((run / "model" / "model.json").read_text())["stages"][-1] == "crop"


def test_resume_on_other_data_is_refused(run: Path, tmp_path: Path) -> None:
    other = make_fake_cub(tmp_path / "other", train_per_class=6)  # --root on resume: must be the run's data
    before = tree_hash(run)
    stages = ("--stages", "classifier,localizer,crop")
    result = invoke("train", "--out", run, "--resume", "--root", other, *stages)
    assert_clean_exit(result, 1, "is not the data this run was trained on", "metrics.jsonl: train {")
    assert tree_hash(run) == before


def test_shortcuts_do_not_hide_a_bad_set_value(cub: Path, tmp_path: Path) -> None:
    zero = invoke(
        *_args(cub, tmp_path / "a", "--set", "stages.classifier.batch_size=0")
    )  # and --batch-size 4
    assert_clean_exit(zero, 1, "stages.classifier.batch_size")
    negative = invoke(*_args(cub, tmp_path / "b", "--set", "stages.crop.epochs=-1"))  # and --epochs 1
    assert_clean_exit(negative, 1, "stages.crop.epochs")
    said = invoke(*_args(tmp_path / "no-data", tmp_path / "c", "--set", "stages.crop.epochs=3"))
    assert_clean_exit(said, 1, "note: --epochs 1 replaces --set stages.crop.epochs=3")
    assert not any((tmp_path / name).exists() for name in "abc")


# ------------------------------------------------------------------------------- no silent wrong answer
@pytest.mark.parametrize(
    "setting", ["stages.classifier.lr=inf", "stages.classifier.lr=.nan", "loss.lambda=.inf", "model.tau=.nan"]
)
def test_non_finite_hyper_parameters_are_refused(setting: str, cub: Path, tmp_path: Path) -> None:
    result = invoke(*_args(cub, tmp_path / "out", "--set", setting))
    assert_clean_exit(result, 1, setting.partition("=")[0], "Input should be a finite number")
    assert not (tmp_path / "out").exists()


def test_evaluate_tau_nan_is_refused(trained: Path) -> None:
    assert_clean_exit(invoke("evaluate", "--run", trained, "--tau", "nan"), 2, "not a finite number")


def test_weights_that_turn_nan_are_never_saved_nor_loaded(run: Path, cub: Path, tmp_path: Path, image: Path):
    out = tmp_path / "nan"
    huge = ("--set", "stages.classifier.lr=1e38", "--set", "stages.classifier.weight_decay=1e38")
    result = invoke(*_args(cub, out, "--stages", "classifier", "--batch-size", "9", *huge))
    assert_clean_exit(
        result, 1, "stage 'classifier', epoch 1: the weights are not finite", "stages.classifier.lr"
    )
    assert not (out / "model").exists() and not (out / "checkpoints").exists()

    weights = run / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["classifier.weight"][0, 0] = float("nan")
    save_file(tensors, str(weights))
    for command in (("evaluate", "--run", run), ("predict", "--run", run, image)):
        assert_clean_exit(
            invoke(*command), 1, f"{weights} holds weights that are not finite", "classifier.weight"
        )


def test_evaluate_val_of_a_run_without_a_validation_split(cub: Path, tmp_path: Path) -> None:
    out = tmp_path / "noval"
    plain = ("--set", "dataset.val_fraction=0", "--set", "train.select=last", "--epochs", "0")
    assert_clean_exit(invoke(*_args(cub, out, "--stages", "classifier", *plain)), 0, "no validation split")
    result = invoke("evaluate", "--run", out, "--split", "val")
    assert_clean_exit(result, 1, "trained without a validation split", "--split test")
    assert "top-1" not in result.output


def test_an_unfinished_run_is_not_used_as_a_finished_one(run: Path, image: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["stages"] = ["classifier", "localizer", "crop", "weighted"]  # killed after stage 2 of 4
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    unfinished = "is unfinished: stages done classifier, localizer; not done crop, weighted"
    for command in (
        ("evaluate", "--run", run),
        ("predict", "--run", run, image),
        ("export", "--run", run, "--out", tmp_path / "m.onnx", "--no-check"),
    ):
        assert_clean_exit(invoke(*command), 1, unfinished, "--allow-unfinished", "--resume")
    chosen = invoke("evaluate", "--run", run, "--allow-unfinished")
    assert_clean_exit(chosen, 0, unfinished, "top-1")


# ------------------------------------------------------------------- every output path checked first
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


OUTPUTS = {
    "evaluate --json DIR": (
        lambda r, t: ("evaluate", "--run", r, "--json", t),
        "is a folder, not a regular file",
    ),
    "evaluate --json unwritable": (
        lambda r, t: ("evaluate", "--run", r, "--json", _unwritable() / "elope" / "m.json"),
        "cannot write in /sys",
    ),
    "evaluate --predictions FIFO": (
        lambda r, t: ("evaluate", "--run", r, "--predictions", _fifo(t / "p.jsonl")),
        "is a FIFO (named pipe), not a regular file",
    ),
    "evaluate --json over the model": (
        lambda r, t: ("evaluate", "--run", r, "--json", r / "model" / "model.json"),
        "which this command reads: it must not be overwritten",
    ),
    "evaluate --examples, a folder there": (
        lambda r, t: (r / "examples_test.png").mkdir() or ("evaluate", "--run", r, "--examples", "2"),
        "examples_test.png: is a folder, not a regular file",
    ),
    "predict --save-vis FILE": (
        lambda r, t: ("predict", "--run", r, t / "a.png", "--save-vis", t / "a.png"),
        "is a regular file, not a folder",
    ),
    "predict --save-vis over the images": (
        lambda r, t: ("predict", "--run", r, t, "--save-vis", t),
        "would overwrite that input image",
    ),
    "export --out DIR": (lambda r, t: ("export", "--run", r, "--out", t), "is a folder, not a regular file"),
    "export --out over the model": (
        lambda r, t: ("export", "--run", r, "--out", r / "model" / "model.safetensors"),
        "must not be overwritten",
    ),
    "train --out unwritable": (
        lambda r, t: ("train", "--dataset", "synthetic", "--out", _unwritable() / "run"),
        "cannot write in /sys",
    ),
    "train --out FILE": (
        lambda r, t: ("train", "--dataset", "synthetic", "--out", t / "a.png"),
        "is a regular file, not a folder",
    ),
    "ablate --out unwritable": (
        lambda r, t: ("ablate", "--out", _unwritable() / "a"),
        "cannot write in /sys",
    ),
    "data synth --out unwritable": (
        lambda r, t: ("data", "synth", "--out", _unwritable() / "d"),
        "cannot write in /sys",
    ),
    "demo --out unwritable": (lambda r, t: ("demo", "--out", _unwritable() / "d"), "cannot write in /sys"),
}


@pytest.mark.parametrize("case", OUTPUTS)
def test_output_paths_are_checked_before_the_work(case: str, run: Path, tmp_path: Path) -> None:
    make, needle = OUTPUTS[case]
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "a.png")
    args = make(run, folder)
    before = tree_hash(run)
    with deadline(120):  # a FIFO opened for writing blocks until a reader comes
        result = invoke(*args)
    assert_clean_exit(result, 1, needle)
    assert len(error_lines(result)) == 1
    assert "top-1" not in result.output and "box [" not in result.output  # refused before the work
    assert tree_hash(run) == before


# -------------------------------------------------------------------------- hangs and tracebacks
def test_a_fifo_named_as_an_image_does_not_hang_predict(trained: Path, tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "x.jpg")
    with deadline(60):
        named = invoke("predict", "--run", trained, fifo)
    assert_clean_exit(named, 1, "x.jpg: cannot read", "FIFO")


@pytest.mark.parametrize("kind", ["garbage .onnx", "checkpoint .pt", "weights .safetensors"])
def test_predict_model_that_is_not_an_exported_file(kind: str, trained: Path, image: Path, tmp_path: Path):
    source = {
        "garbage .onnx": None,
        "checkpoint .pt": trained / "checkpoints" / "last.pt",
        "weights .safetensors": trained / "model" / "model.safetensors",
    }[kind]
    model = tmp_path / ("m" + kind.rpartition(" ")[2])
    model.write_bytes(b"\x08\x07 not a protobuf" * 8 if source is None else source.read_bytes()[:200_000])
    result = invoke("predict", "--model", model, image)
    assert_clean_exit(result, 1, f"cannot load {model} as an exported")
    assert len(error_lines(result)) == 1


@pytest.mark.parametrize("device", ["cuda", "mps", "meta", "tpu9"])
def test_devices_this_machine_lacks(device: str, trained: Path, image: Path) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for command in (("evaluate", "--run", trained), ("predict", "--run", trained, image)):
        result = invoke(*command, "--device", device)
        assert_clean_exit(result, 1, f"--device {device}")
        assert len(error_lines(result)) == 1


@pytest.mark.parametrize(
    ("content", "needle"),
    [("[1, 2]", "is not an elope model description"), ("TAU", "tau must lie in [0, 1)")],
)
def test_model_json_that_is_wrong(content: str, needle: str, run: Path, image: Path) -> None:
    meta = run / "model" / "model.json"
    if content == "TAU":
        data = json.loads(meta.read_text())
        data["spec"]["tau"] = 5.0
        content = json.dumps(data)
    meta.write_text(content)
    for command in (("evaluate", "--run", run), ("predict", "--run", run, image)):
        assert_clean_exit(invoke(*command), 1, str(meta), needle)


def test_a_moved_run_folder_says_root(run: Path) -> None:
    """A run whose data was generated into RUN/data, moved elsewhere: the recorded root is gone."""
    (run / "data").mkdir()
    (run / "data" / "elope_synthetic.json").write_text("{}")
    gone = "/no/longer/here/data"
    meta = json.loads((run / "model" / "model.json").read_text())
    meta["root"] = gone
    (run / "model" / "model.json").write_text(json.dumps(meta))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["dataset"]["root"] = gone
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    for command in (("evaluate", "--run", run), ("train", "--out", run, "--resume")):
        assert_clean_exit(invoke(*command), 1, gone, f"--root {run / 'data'}")


def test_predict_reads_every_image_format_and_reports_what_it_skips(trained: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    picture = Image.new("RGB", (40, 30), (30, 160, 60))
    names = ["a.tif", "b.gif", "c.ico", "d.webp", "e.bmp"]
    for name in names:
        picture.save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    os.symlink(".", folder / "loop")  # a folder that links back to itself
    os.symlink("self.jpg", folder / "self.jpg")  # a file that links to itself
    result = invoke("predict", "--run", trained, folder)
    assert_clean_exit(
        result,
        1,
        f"skipped: {folder / 'notes.txt'}: not an image file name (.txt)",
        f"error: {folder / 'self.jpg'}: a link loop",
        "links back to",
        "2 file(s) or folder(s) that look like images were not read",
    )
    assert [name for name in names if f"{folder / name}  box [" not in result.output] == []


def test_sigterm_is_handled_like_ctrl_c(cub: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut"
    every_step = ("--set", "train.checkpoint_every_steps=1")
    cut = run_cli(
        _args(cub, out, "--stages", "classifier", *every_step),
        env={"ELOPE_TEST_SIGNAL": "TERM"},
        kill_at="classifier:0:2",
    )
    assert cut.returncode == 143, cut.stderr
    assert "terminated (SIGTERM); a training run continues with --resume" in cut.stderr
    assert "Traceback" not in cut.stderr
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] in (1, 2)
    assert not (out / ".elope.lock").exists()
