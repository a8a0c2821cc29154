"""Bad inputs, third round (issue 26, docs/reliability.md, "Third round: answers"): what a trained run answers.

``evaluate --split train`` of a run without a validation split says it scores images the run trained on;
``enroll --class`` refuses a name that does not print; a ``model.json`` of an unknown version, or whose
classes share a name, is refused; a run folder deleted, moved or made unwritable under a running ``train``
is one line naming it (the lock's release used to hide it with a ``PermissionError``). One tiny run (no
validation split, 0 epochs: its model is its initialisation) is trained once and copied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from bad_inputs import assert_clean_exit, copy_run, invoke, tree_hash
from click.testing import CliRunner
from fake_datasets import make_fake_cub
from PIL import Image
from train_helpers import tiny_args, write_tiny_synthetic

from elope.cli import main
from elope.commands.train import STEP_HOOKS
from elope.engine.stage_state import StageState
from elope.runs.lock import run_lock


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_cub(tmp_path_factory.mktemp("cub") / "cub")


@pytest.fixture(scope="module")
def trained(cub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run without a validation split (it trains on every training image, as the paper's models do)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    result = invoke(
        "train", "--dataset", "cub", "--root", cub, "--out", out, "--backbone", "resnet18", "--no-pretrained",
        "--image-size", "40", "--epochs", "0", "--stages", "classifier", "--set", "model.embedding_dim=16",
        "--set", "dataset.val_fraction=0", "--set", "train.select=last", "--num-workers", "0",
    )  # fmt: skip
    assert_clean_exit(result, 0, "no validation split")
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return copy_run(trained, tmp_path / "run")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    return path


# ------------------------------------------------------------------------------------ evaluate --split
@pytest.mark.parametrize(("split", "trained_on"), [("train", True), ("trainval", True), ("test", False)])
def test_evaluate_says_when_it_scores_training_images(split: str, trained_on: bool, trained: Path) -> None:
    result = invoke("evaluate", "--run", trained, "--split", split, "--json", "-")
    assert_clean_exit(result, 0)
    report = json.loads(result.output[result.output.index("{") :])
    assert report["trained_on_split"] is trained_on
    warning = f"warning: the {split} split holds images this run was trained on"
    assert (warning in result.output) is trained_on
    table = invoke("evaluate", "--run", trained, "--split", split)
    assert_clean_exit(table, 0, "top-1")
    assert (f"{split} (images the model was trained on):" in table.output) is trained_on


def test_evaluate_of_the_same_data_at_another_path_is_still_training_data(trained: Path, cub: Path) -> None:
    """--root written another way (a trailing /., a link) is the run's own data all the same."""
    result = invoke("evaluate", "--run", trained, "--split", "train", "--root", f"{cub}/.", "--json", "-")
    assert_clean_exit(result, 0, "holds images this run was trained on")


# --------------------------------------------------------------------------------------- enroll --class
@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("", "'' is empty or only white space"),
        ("   ", "'   ' is empty or only white space"),
        ("Ivory\nGull", "holds the character U+000A"),
        ("Ivory\x1b[2JGull", "holds the character U+001B"),
        ("Ivory\u202eGull", "holds the character U+202E"),
    ],
    ids=["empty", "spaces", "newline", "escape", "bidi override"],
)
def test_enroll_refuses_a_class_name_that_does_not_print(
    name: str, needle: str, trained: Path, image: Path, tmp_path: Path
) -> None:
    result = invoke("enroll", "--run", trained, "--class", name, image, "--out", tmp_path / "new")
    assert_clean_exit(result, 2, "Invalid value for '--class'", needle)
    assert not (tmp_path / "new").exists()


def test_enroll_refuses_a_name_that_reads_as_a_taken_one(trained: Path, image: Path, tmp_path: Path) -> None:
    result = invoke("enroll", "--run", trained, "--class", " 001.CLASS_1 ", image, "--out", tmp_path / "new")
    assert_clean_exit(result, 1, "is already one of the model's classes (as '001.Class_1')")
    folders = tmp_path / "from"
    for name in ("Gull", "gull"):
        shutil.copy(image, (folders / name).mkdir(parents=True) or folders / name / "a.png")
    result = invoke("enroll", "--run", trained, "--classes-from", folders, "--out", tmp_path / "new")
    assert_clean_exit(result, 1, "class 'gull' is already the name of another new class (as 'Gull')")


# ------------------------------------------------------------------------------------------- model.json
def _edit_meta(run: Path, change: Callable[[dict], None]) -> None:
    path = run / "model" / "model.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("version", "needle"),
    [
        (4, "is of model format version 4, newer than this elope reads (versions 1 to 3): upgrade elope"),
        ("3", "has the version '3', which no elope writes"),
        (0, "has the version 0, which no elope writes"),
    ],
)
def test_model_json_of_an_unknown_version_is_refused(
    version: object, needle: str, run: Path, image: Path
) -> None:
    _edit_meta(run, lambda meta: meta.update(version=version))
    before = tree_hash(run)
    assert_clean_exit(invoke("predict", "--run", run, image), 1, "model.json", needle)
    assert_clean_exit(invoke("evaluate", "--run", run), 1, "model.json", needle)
    assert tree_hash(run) == before


def test_model_json_whose_classes_share_a_name_is_refused(run: Path, image: Path) -> None:
    _edit_meta(run, lambda meta: meta["classes"].__setitem__(2, meta["classes"][0]))
    result = invoke("predict", "--run", run, image)
    assert_clean_exit(result, 1, "model.json names classes 0 and 2 both '001.Class_1'")


# ------------------------------------------------------------------------ the run folder under a train
@contextmanager
def _unwritable(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable for this process: immutable (``chattr +i``) for root, who ignores
    permissions; read-only for anyone else (:func:`_require_unwritable` says whether that works here)."""
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True)
    else:
        folder.chmod(0o555)
    try:
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
        else:
            folder.chmod(0o755)


def _require_unwritable(scratch: Path) -> None:
    """Skip where :func:`_unwritable` cannot make a folder unwritable (no chattr, a file system without it)."""
    scratch.mkdir()
    if os.geteuid() == 0 and not shutil.which("chattr"):
        pytest.skip("no chattr here: root cannot be kept from writing")
    with _unwritable(scratch):
        try:
            (scratch / "probe").write_text("x")
        except OSError:
            return
    pytest.skip(f"cannot make {scratch} unwritable here")


def test_lock_release_never_hides_the_error(tmp_path: Path) -> None:
    """The lock file cannot be removed from a folder made unwritable meanwhile: the error of the command
    goes through, not a PermissionError of the release (the file left behind blocks nothing)."""
    _require_unwritable(tmp_path / "scratch")
    folder = tmp_path / "run"
    with ExitStack() as restore:  # writable again only after the lock's release
        with pytest.raises(ZeroDivisionError), run_lock(folder, "elope test"):
            restore.enter_context(_unwritable(folder))
            raise ZeroDivisionError
        assert (folder / ".elope.lock").is_file()  # could not be removed: left behind
    with run_lock(folder, "elope test"):  # a later writer locks the file left behind
        assert (folder / ".elope.lock").is_file()


def _train_with(root: Path, out: Path, at_step: Callable[[Path], object]) -> object:
    """``elope train`` of the classifier stage, ``at_step(out)`` called after its first step."""

    def hook(state: StageState) -> None:
        if (state.stage, state.epoch, state.step) == ("classifier", 0, 1):
            at_step(out)

    args = tiny_args(root, out, "--stages", "classifier", "--set", "train.checkpoint_every_steps=1")
    return CliRunner().invoke(main, args, obj={STEP_HOOKS: [hook]})


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_a_run_folder_deleted_under_train_is_one_line(how: str, tmp_path: Path) -> None:
    root = write_tiny_synthetic(tmp_path / "data")
    out = tmp_path / "run"
    gone = (lambda o: shutil.rmtree(o)) if how == "deleted" else (lambda o: o.rename(tmp_path / "moved"))
    result = _train_with(root, out, gone)
    assert_clean_exit(result, 1, f"the run folder {out} was deleted or moved while", "--resume")
    assert not out.exists()  # never made again by a mkdir -p of the next write


def test_a_run_folder_made_unwritable_under_train_is_one_line(tmp_path: Path) -> None:
    _require_unwritable(tmp_path / "scratch")
    root = write_tiny_synthetic(tmp_path / "data")
    out = tmp_path / "run"
    with ExitStack() as stack:
        result = _train_with(root, out, lambda o: stack.enter_context(_unwritable(o)))
    assert_clean_exit(result, 1, f"cannot write in the run folder {out} while training", "--resume")
    assert "PermissionError" not in result.output
