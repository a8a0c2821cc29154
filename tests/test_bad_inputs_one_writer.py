"""Bad inputs, third round, section 1 (issue 26, ``docs/reliability.md``, "Third round: one writer"): no
command destroys an input, a run or a data set, writes through a link, leaves half a file, or loses one
of two results written at once. Each case failed on the code before ``elope/writer.py``.

One tiny run (ResNet-18 at 40 px on a fake CUB, classifier and localizer, 1 epoch each) is trained once
and copied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from bad_inputs import assert_clean_exit, copy_run, invoke, tree_hash
from fake_datasets import make_fake_cub
from PIL import Image
from train_helpers import tiny_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_cub(tmp_path_factory.mktemp("cub") / "cub")


@pytest.fixture(scope="module")
def trained(cub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    args = tiny_args(cub, out, "--image-size", "40", "--stages", "classifier,localizer")
    assert_clean_exit(invoke(*args), 0, "done:")
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return copy_run(trained, tmp_path / "run")


@pytest.fixture
def data(cub: Path, tmp_path: Path) -> Path:
    """A private copy of the fake CUB (the tests try to overwrite it)."""
    return copy_run(cub, tmp_path / "cub")


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    return path


@pytest.mark.parametrize("name", ["metrics.jsonl", "model/class_means.safetensors", "model/model.json"])
def test_embed_never_replaces_a_file_of_the_run(run: Path, name: str) -> None:
    before = tree_hash(run)
    result = invoke("embed", "--run", run, "--out", run / name)
    assert_clean_exit(result, 1, "which this command reads: it must not be overwritten")
    assert_clean_exit(invoke("embed", "--run", run, "--out", run / name, "--force"), 1, "this command reads")
    assert tree_hash(run) == before


def test_embed_never_replaces_its_input_photo(run: Path, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.jpg")
    data = photo.read_bytes()
    result = invoke("embed", "--run", run, photo, "--out", photo)
    assert_clean_exit(result, 1, "which this command reads")
    assert_clean_exit(
        invoke("embed", "--run", run, photo, "--out", photo, "--force"), 1, "this command reads"
    )
    assert photo.read_bytes() == data


def test_embed_and_evaluate_never_write_into_the_data_set(run: Path, data: Path) -> None:
    before = tree_hash(data)
    labels = data / "CUB_200_2011" / "image_class_labels.txt"
    result = invoke("embed", "--run", run, "--root", data, "--out", labels)
    assert_clean_exit(result, 1, "which this command reads")
    images = data / "CUB_200_2011" / "images.txt"
    result = invoke("evaluate", "--run", run, "--root", data, "--json", images)
    assert_clean_exit(result, 1, "which this command reads")
    result = invoke("evaluate", "--run", run, "--root", data, "--json", images, "--force")
    assert_clean_exit(result, 1, "which this command reads")
    result = invoke("evaluate", "--run", run, "--root", data, "--json", data / "new.json")
    assert_clean_exit(result, 1, "which this command reads")  # a new file in a data set too
    assert tree_hash(data) == before


def test_the_data_set_the_run_records_is_protected_too(run: Path, cub: Path) -> None:
    """Without --root the data set is the one the run's model.json names."""
    before = tree_hash(cub)
    target = cub / "CUB_200_2011" / "train_test_split.txt"
    assert_clean_exit(invoke("evaluate", "--run", run, "--json", target), 1, "which this command reads")
    assert tree_hash(cub) == before


def test_predict_never_overwrites_a_picture_of_the_user(run: Path, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "in" / "a.jpg")
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "a.png").write_bytes(b"the user's picture")
    result = invoke("predict", "--run", run, photo, "--save-vis", vis)
    assert_clean_exit(result, 1, "a.png: exists and was not written by elope", "--force")
    assert (vis / "a.png").read_bytes() == b"the user's picture"
    result = invoke("predict", "--run", run, photo, "--save-vis", vis, "--force")
    assert_clean_exit(result, 0, f"replaced {vis / 'a.png'}")
    assert (vis / "a.png").read_bytes().startswith(b"\x89PNG")
    assert_clean_exit(invoke("predict", "--run", run, photo, "--save-vis", vis), 0)  # elope's own now


@pytest.mark.parametrize(
    "command",
    [
        lambda r, out: ("evaluate", "--run", r, "--json", out),
        lambda r, out: ("evaluate", "--run", r, "--predictions", out),
        lambda r, out: ("embed", "--run", r, "--out", out),
        lambda r, out: ("export", "--run", r, "--out", out, "--no-check"),
    ],
    ids=["evaluate --json", "evaluate --predictions", "embed --out", "export --out"],
)
def test_a_link_is_never_written_through(run: Path, tmp_path: Path, command) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not elope's")
    link = run / "out.bin"
    link.symlink_to(outside)
    result = invoke(*command(run, link))
    assert_clean_exit(result, 1, "is a symbolic link")
    assert outside.read_text() == "not elope's" and link.is_symlink()


def test_a_foreign_file_needs_force(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    out.write_text("my notes")
    assert_clean_exit(invoke("evaluate", "--run", run, "--json", out), 1, "not written by elope")
    assert out.read_text() == "my notes"
    assert_clean_exit(invoke("evaluate", "--run", run, "--json", out, "--force"), 0, f"replaced {out}")
    assert '"top1"' in out.read_text()


def _child(code: str, *args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


KILLED_IN_ONNX_SAVE = """
import os, signal, sys
import onnx
def half(proto, path, *args, **kwargs):  # write half the file, then die (a kill, a power cut)
    data = proto.SerializeToString()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
onnx.save = half
from elope.cli import main
main(sys.argv[1:])
"""


def test_export_killed_mid_write_leaves_the_old_file(run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    good = tmp_path / "good.onnx"
    assert_clean_exit(invoke("export", "--run", run, "--out", good, "--no-check"), 0)
    before = good.read_bytes()
    child = _child(KILLED_IN_ONNX_SAVE, "export", "--run", run, "--out", good, "--no-check")
    child.wait(timeout=300)
    assert child.returncode == -signal.SIGKILL
    assert good.read_bytes() == before


HOLDS_THE_OUTPUT = """
import sys, time
import elope.commands.options as options
checked = options.checked_output
def slow(path, option, **kwargs):  # the command's work, made long: it holds its outputs meanwhile
    found = checked(path, option, **kwargs)
    if path is not None and option == sys.argv[1]:
        print("claimed", flush=True)
        time.sleep(120)
    return found
options.checked_output = slow
from elope.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    ("option", "command"),
    [
        ("--out", lambda r, out: ("export", "--run", r, "--out", out, "--no-check")),
        ("--json", lambda r, out: ("evaluate", "--run", r, "--json", out)),
    ],
    ids=["export", "evaluate"],
)
def test_two_writers_of_one_output_the_second_is_refused(run: Path, tmp_path: Path, option, command) -> None:
    out = tmp_path / "same.out"
    child = _child(HOLDS_THE_OUTPUT, option, *command(run, out))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "claimed"
        result = invoke(*command(run, out))
        assert_clean_exit(result, 1, f"process {child.pid}", "is writing it now")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not out.exists()
    assert_clean_exit(invoke(*command(run, out)), 0)  # the lock of the killed process blocks nothing


def test_data_synth_never_writes_into_a_run_folder(tmp_path):
    """Found by the fresh sweep: ``data synth --out RUN --force`` wrote a data set among a run's files, and
    ``--out RUN/data --force`` would delete the data the run was trained on. Refused, --force or not."""
    from click.testing import CliRunner

    from elope.cli import main

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "config.yaml").write_text("dataset: {}\n")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "data" / "kept.txt").write_text("the run's data\n")
    for out in (run, run / "data", run / "data" / "new"):
        result = CliRunner().invoke(main, ["data", "synth", "--out", str(out), "--force", "--classes", "2"])
        assert result.exit_code == 1 and "never written into a run" in result.output, result.output
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "data", "metrics.jsonl"]
    assert [p.name for p in (run / "data").iterdir()] == ["kept.txt"]


@pytest.mark.parametrize("folder", ["model", "checkpoints", "tensorboard"])
def test_train_force_never_deletes_a_file_no_run_writes(cub: Path, tmp_path: Path, folder: str) -> None:
    """Found by the fresh sweep after the writer (S-W1): ``train --out U --force`` on a folder of the user
    that held ``model/weights.bin`` (or any file in a folder named like a run's) deleted it with the whole
    folder. Refused now, nothing changed; a real run's files are still deleted by ``--force``."""
    out = tmp_path / "mine"
    (out / folder).mkdir(parents=True)
    (out / folder / "weights.bin").write_bytes(b"the user's weights")
    (out / "config.yaml").write_text("# my notes\n")
    before = tree_hash(out)
    result = invoke(*tiny_args(cub, out, "--force", epochs=0))
    assert_clean_exit(
        result, 1, "holds files that no run writes", f"{folder}/weights.bin", "Nothing was changed"
    )
    assert tree_hash(out) == before


def test_train_force_keeps_the_user_files_in_the_generated_data(tmp_path: Path) -> None:
    """S-W1 too: ``--force`` on a run that generated ``RUN/data`` deleted all of ``data/``, also a file
    the user had put there; now only the files of the generated set go."""
    from elope.data.synthetic import write_synthetic
    from elope.runs.guard import open_run_folder

    out = tmp_path / "run"
    write_synthetic(out / "data", classes=2, train=1, test=1, size=32, seed=0)
    (out / "data" / "mine.txt").write_text("keep me\n")
    (out / "config.yaml").write_text("dataset:\n  name: synthetic\n")
    assert open_run_folder(out, force=True, generated_data=True, echo=lambda _: None) is None
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["mine.txt"]


def test_data_synth_force_never_deletes_an_image_of_the_user(tmp_path: Path) -> None:
    """Found by the fresh sweep after the writer (S-W13, S-W14): ``data synth --force`` deleted every file
    its ``images.txt`` listed: an image the user had added to the set (and listed), or the images of a real
    CUB tree beside a copied ``elope_synthetic.json``. Only names the generator gives are deleted now."""
    synth = ["data", "synth", "--classes", "2", "--train", "1", "--test", "1", "--size", "32", "--force"]
    made = tmp_path / "made"
    assert_clean_exit(invoke(*synth, "--out", made), 0)
    mine = made / "CUB_200_2011" / "images" / "003.mine" / "me.jpg"
    _photo(mine)
    with open(made / "CUB_200_2011" / "images.txt", "a", encoding="utf-8") as f:
        f.write("99 003.mine/me.jpg\n")
    cub = tmp_path / "cub"
    theirs = _photo(cub / "CUB_200_2011" / "images" / "001.Albatross" / "Albatross_0046_18.jpg")
    (cub / "CUB_200_2011" / "images.txt").write_text("1 001.Albatross/Albatross_0046_18.jpg\n")
    (cub / "elope_synthetic.json").write_bytes((made / "elope_synthetic.json").read_bytes())
    for out, photo in ((made, mine), (cub, theirs)):
        before = photo.read_bytes()
        assert_clean_exit(invoke(*synth, "--out", out), 0)
        assert photo.read_bytes() == before


@pytest.mark.parametrize(("command", "table"), [("suite", "suite.md"), ("ablate", "ablation.md")])
def test_suite_and_ablate_never_replace_a_table_of_the_user(tmp_path: Path, command: str, table: str) -> None:
    """Found by the fresh sweep after the writer (S-W17): ``suite --out DIR --report`` (and ``ablate``)
    replaced the user's ``DIR/suite.md`` without a word (the command owned all of ``DIR``). Refused now,
    before the work; the command's own table is replaced as before."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / table).write_text("my own table\n")
    before = tree_hash(out)
    assert_clean_exit(invoke(command, "--out", out, "--report"), 1, "exists and was not written by elope")
    assert tree_hash(out) == before
    if command == "suite":  # --force: the user's consent, as for every other output (the message offers it)
        assert_clean_exit(invoke(command, "--out", out, "--report", "--force"), 0, "written:")
        assert (out / table).read_text() != "my own table\n"
        fresh = tmp_path / "fresh"
        for _ in range(2):
            assert_clean_exit(invoke(command, "--out", fresh, "--report"), 0, "written:")


def test_demo_never_replaces_a_file_of_the_user(tmp_path: Path) -> None:
    """Found by the fresh sweep after the writer (S-W24): ``demo --out DIR`` on a folder of the user that
    held ``demo_results.json`` replaced it at the end (the demo owned all of ``DIR``). Refused before the
    work when ``DIR`` holds no earlier demo; nothing changed."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "demo_results.json").write_text('{"mine": 1}\n')
    before = tree_hash(out)
    result = invoke(
        "demo", "--out", out, "--epochs", "0", "--pictures", "0", "--no-baseline", "--device", "cpu"
    )
    assert_clean_exit(result, 1, "holds no earlier demo")
    assert tree_hash(out) == before


def test_train_force_never_deletes_a_config_yaml_that_is_no_recipe(tmp_path: Path) -> None:
    """S-W26: ``train --out DIR --force`` on a folder whose only run-like file was the user's
    ``config.yaml`` (not a recipe at all) replaced it. Refused now, nothing changed."""
    from elope.failures import TrainingError
    from elope.runs.guard import open_run_folder

    (tmp_path / "config.yaml").write_text("my notes: [\n")
    with pytest.raises(TrainingError, match="not a run's recipe"):
        open_run_folder(tmp_path, force=True, echo=lambda _: None)
    assert (tmp_path / "config.yaml").read_text() == "my notes: [\n"


@pytest.mark.parametrize(
    ("name", "text", "what"),
    [
        ("metrics.jsonl", "my lab notes\n", "not a run's log"),
        ("result.json", '{"a": 1}\n', "not an ablation"),
    ],
)
def test_train_force_never_deletes_a_log_or_result_of_the_user(
    tmp_path: Path, name: str, text: str, what: str
) -> None:
    """Left open by the fresh sweep, fixed after it: ``train --out DIR --force`` deleted a top-level
    ``metrics.jsonl`` or ``result.json`` of the user's by its name. Refused now, nothing changed; a run's
    own log (its data line first) and an ablation row's result still go."""
    from elope.failures import TrainingError
    from elope.runs.guard import _written_by_a_run, open_run_folder

    (tmp_path / name).write_text(text)
    with pytest.raises(TrainingError, match=what):
        open_run_folder(tmp_path, force=True, echo=lambda _: None)
    assert (tmp_path / name).read_text() == text
    ours = {
        "metrics.jsonl": '{"event": "data", "dataset": "cub"}\n',
        "result.json": '{"row": "r", "seed": 0, "top1": 0.5}',
    }
    (tmp_path / name).write_text(ours[name])
    assert _written_by_a_run(tmp_path / name)
