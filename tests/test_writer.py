"""The one writer (``elope/writer.py``, ``elope/written.py``): its rules, one at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from elope import writer
from elope.written import MANIFEST, OutputLockedError, is_written, lock_path

ROOT = Path(__file__).resolve().parents[1]


def test_write_is_atomic_on_an_error(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError), writer.write_with(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, stdout=subprocess.PIPE, text=True
    )


def test_a_kill_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "good.onnx"
    target.write_bytes(b"good" * 1000)
    child = _child(
        """
        import sys, time
        from elope import writer
        with writer.write_with(sys.argv[1]) as tmp:
            tmp.write_bytes(b"half")
            print("writing", flush=True)
            time.sleep(60)
        """,
        str(target),
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert target.read_bytes() == b"good" * 1000


def test_a_symlink_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    link = tmp_path / "out.json"
    link.symlink_to(outside)
    with pytest.raises(writer.WriteRefusedError, match="symbolic link"):
        writer.write_text(link, "x")
    with writer.session("t", force=True), pytest.raises(writer.WriteRefusedError, match="symbolic link"):
        writer.claim(link, "--json")
    assert outside.read_text() == "mine"


def test_inputs_and_read_folders_are_refused(tmp_path: Path) -> None:
    photo, data = tmp_path / "photo.jpg", tmp_path / "data"
    photo.write_bytes(b"jpeg")
    (data / "sub").mkdir(parents=True)
    with writer.session("t", inputs=[photo], read=[data], force=True):
        with pytest.raises(writer.WriteRefusedError, match="this command reads"):
            writer.claim(photo, "--out")
        with pytest.raises(writer.WriteRefusedError, match="this command reads"):
            writer.write_text(data / "sub" / "new.txt", "x")  # new files in a data set too
        with pytest.raises(writer.WriteRefusedError, match="this command reads"):
            writer.claim(tmp_path / "data" / ".." / "data" / "x.json", "--json")
    assert photo.read_bytes() == b"jpeg" and not (data / "sub" / "new.txt").exists()


def test_a_foreign_file_needs_force_and_the_replacement_is_said(tmp_path: Path) -> None:
    mine = tmp_path / "a.png"
    mine.write_bytes(b"user")
    said: list[str] = []
    with (
        writer.session("t", echo=said.append),
        pytest.raises(writer.WriteRefusedError, match=r"not written by elope.*--force"),
    ):
        writer.write_bytes(mine, b"elope")
    assert mine.read_bytes() == b"user"
    with writer.session("t", force=True, echo=said.append):
        writer.write_bytes(mine, b"elope")
    assert mine.read_bytes() == b"elope" and said == [f"replaced {mine}"]
    assert is_written(mine) and (tmp_path / MANIFEST).is_file()
    with writer.session("t", echo=said.append):
        writer.write_bytes(mine, b"elope again")  # elope's own file: replaced, and said
    assert said[-1] == f"replaced {mine}"
    mine.write_bytes(b"edited by the user")
    assert not is_written(mine)
    with writer.session("t"), pytest.raises(writer.WriteRefusedError, match="not written by elope"):
        writer.write_bytes(mine, b"x")


def test_own_folders_and_the_python_api_replace_freely(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("old")
    with writer.session("train", own=[run]):
        writer.write_text(run / "config.yaml", "new")
    assert (run / "config.yaml").read_text() == "new" and not (run / MANIFEST).exists()
    (tmp_path / "x.txt").write_text("old")
    writer.write_text(tmp_path / "x.txt", "new")  # no session: the caller named the path in code
    assert (tmp_path / "x.txt").read_text() == "new"


def test_file_mode_and_appends(tmp_path: Path) -> None:
    path = writer.write_text(tmp_path / "m.json", "{}\n")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    writer.append_text(tmp_path / "log.jsonl", "a\n")
    writer.append_text(tmp_path / "log.jsonl", "b\n")
    assert (tmp_path / "log.jsonl").read_text() == "a\nb\n"
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "log.jsonl")
    with pytest.raises(writer.WriteRefusedError, match="symbolic link"):
        writer.append_text(tmp_path / "link.jsonl", "c\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


HOLD = """
import sys, time
from elope import writer
with writer.session("elope evaluate"):
    writer.claim(sys.argv[1], "--json")
    print("claimed", flush=True)
    time.sleep(60)
"""


def test_two_writers_of_one_output_the_second_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    child = _child(HOLD, str(out))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
        with (
            writer.session("t"),
            pytest.raises(OutputLockedError, match=rf"process {child.pid} .*writing it"),
        ):
            writer.claim(out, "--json")
        with pytest.raises(OutputLockedError):
            writer.write_text(out, "x")  # a write without a session takes the lock too
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert lock_path(out).exists()  # left by the killed process: it blocks nothing
    with writer.session("t"):
        writer.claim(out, "--json")
        writer.write_text(out, "{}")
    assert out.read_text() == "{}" and not lock_path(out).exists()


def test_claim_makes_and_removes_the_lock_folder(tmp_path: Path) -> None:
    with writer.session("t"):
        writer.claim(tmp_path / "a" / "b" / "m.json", "--json")
        assert lock_path(tmp_path / "a" / "b" / "m.json").exists()
    assert not (tmp_path / "a").exists()


def test_a_link_above_the_output_is_followed(tmp_path: Path) -> None:
    """Only the output itself may not be a link: a folder reached through one (``runs -> /big/disk``) is
    written in as usual."""
    (tmp_path / "disk").mkdir()
    (tmp_path / "runs").symlink_to(tmp_path / "disk")
    with writer.session("t"):
        writer.claim(tmp_path / "runs" / "m.json", "--json")
        writer.write_text(tmp_path / "runs" / "m.json", "{}")
    assert (tmp_path / "disk" / "m.json").read_text() == "{}"


def _a_run(folder: Path) -> Path:
    """A folder that looks like a run (``elope.outputs.enclosing_run``): config.yaml and metrics.jsonl."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("dataset: {}\n")
    (folder / "metrics.jsonl").write_text("{}\n")
    return folder


def _refused_in_a_run(command: str, **rules: object) -> None:
    with pytest.raises(writer.WriteRefusedError, match=r"lies in the run folder .*never written into a run"):
        writer.session(command, **rules).__enter__()  # refused on entry: nothing to leave


def test_an_owned_folder_in_a_run_is_refused_unless_it_is_the_run_trained(tmp_path: Path) -> None:
    run = _a_run(tmp_path / "R")
    for own in (run, run / "data", run / "sub" / "deeper"):  # data synth / enroll / demo --out into a run
        _refused_in_a_run("elope data synth", own=[own], force=True)
    with writer.session("elope train", run=run):  # --resume / --force: the run itself
        writer.write_text(run / "x.txt", "ok")
    _refused_in_a_run("elope train", run=run / "nested")  # a run inside another run
    with writer.session("elope data synth", own=[tmp_path / "elsewhere"]):
        pass


def test_a_run_an_enclosing_command_owns_may_hold_its_sub_runs(tmp_path: Path) -> None:
    demo = _a_run(tmp_path / "demo")  # an earlier demo's --out: itself a run, its baselines inside
    with writer.session("elope demo", run=demo):
        with writer.session("elope train", run=demo / "baseline-gap"):
            writer.write_text(demo / "baseline-gap" / "config.yaml", "ok")
        with writer.session("elope data synth", own=[demo / "data"]):
            pass
    _refused_in_a_run("elope train", run=demo / "baseline-gap2")  # the same, with no demo around it
