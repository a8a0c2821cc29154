"""`elope data check --dataset shards`: a shard set's counts as its source's, and each damage (a missing
shard, a truncated one, changed bytes, a label out of range, no manifest) reported naming the shard or the
image and the fix, with the exit status of the other layouts' checks."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_helpers import write_tiny_synthetic

from elope.commands.data import data
from elope.data import build_dataset, write_shards
from elope.data.errors import AnnotationError

FIX = "elope data shard"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("data") / "data")


@pytest.fixture(scope="module")
def clean(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "set"
    write_shards("synthetic", source, out, shard_size=5)
    return out


@pytest.fixture
def shard_set(clean: Path, tmp_path: Path) -> Path:
    """A copy of the clean set, to damage."""
    return Path(shutil.copytree(clean, tmp_path / "set"))


def _check(root: Path | str, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(data, ["check", "--dataset", "shards", "--root", str(root), "--json", *extra])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else result.stderr


def _problems(report: dict) -> list[str]:
    return [f"{p['path']}: {p['problem']}" for p in report["problems"]]


def _manifest(root: Path) -> dict:
    return json.loads((root / "shards.json").read_text())


def test_a_clean_shard_set_has_its_sources_counts_and_no_problem(source: Path, clean: Path) -> None:
    code, report = _check(clean)
    from_source = CliRunner().invoke(
        data, ["check", "--dataset", "synthetic", "--root", str(source), "--json"]
    )
    assert (code, from_source.exit_code) == (0, 0)
    assert report == json.loads(from_source.stdout) and report["problems"] == []
    assert report["splits"]["train"]["images"] == 18


def test_the_human_output_names_the_layout(clean: Path) -> None:
    result = CliRunner().invoke(data, ["check", "--dataset", "shards", "--root", str(clean), "--no-decode"])
    assert result.exit_code == 0, result.output
    assert f"shards dataset at {clean}" in result.output and "no problems found" in result.output


def test_a_missing_shard_is_named_once_with_the_fix(shard_set: Path) -> None:
    (shard_set / "train-00001.tar").unlink()
    code, report = _check(shard_set)
    assert code == 1
    problems = _problems(report)
    assert len(problems) == 1, problems  # its 5 images are not reported one by one
    assert f"shard {shard_set / 'train-00001.tar'} of split 'train' is missing" in problems[0]
    assert FIX in problems[0] and "copy it again" in problems[0]
    assert report["splits"]["train"]["images"] == 18  # what the manifest says


def test_a_truncated_shard_is_named_with_its_sizes(shard_set: Path) -> None:
    shard = shard_set / "test-00000.tar"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    code, report = _check(shard_set)
    assert code == 1
    (problem,) = _problems(report)
    assert f"{shard} of split 'test' has {size // 2} bytes, the manifest says {size}" in problem
    assert FIX in problem


def test_changed_bytes_are_found_by_the_sha256_and_the_image_named(shard_set: Path) -> None:
    manifest = _manifest(shard_set)
    samples = manifest["splits"]["train"]["samples"]
    i = samples["shard"].index(2)  # an image of train-00002.tar
    shard = shard_set / "train-00002.tar"
    data = bytearray(shard.read_bytes())
    offset, size = samples["offset"][i], samples["size"][i]
    data[offset : offset + size] = bytes(size)  # same size, the image's bytes zeroed
    shard.write_bytes(bytes(data))
    code, report = _check(shard_set)
    assert code == 1
    problems = _problems(report)
    assert any(p.startswith(f"{shard}: ") and "not its SHA-256" in p and FIX in p for p in problems), problems
    member = f"{shard}/{samples['key'][i]}.{samples['ext'][i]}"
    assert any(p.startswith(f"{member}: unreadable image") for p in problems), problems


def test_a_moved_member_is_named_by_the_tar_header_check(shard_set: Path) -> None:
    """Bytes changed in a member's tar header: the image is not where the manifest says."""
    samples = _manifest(shard_set)["splits"]["test"]["samples"]
    shard = shard_set / "test-00000.tar"
    data = bytearray(shard.read_bytes())
    header = samples["offset"][0] - 512
    data[header : header + 4] = b"XXXX"  # the member's name in its header
    shard.write_bytes(bytes(data))
    code, report = _check(shard_set, "--no-decode")
    assert code == 1
    problems = _problems(report)
    assert any("not its SHA-256" in p for p in problems)
    assert any("the shard was damaged or replaced since its manifest was written" in p for p in problems)


def test_a_label_out_of_range_is_named(shard_set: Path) -> None:
    manifest = _manifest(shard_set)
    manifest["splits"]["test"]["samples"]["label"][0] = 7  # 3 classes
    (shard_set / "shards.json").write_text(json.dumps(manifest))
    code, report = _check(shard_set)
    assert code == 1
    (problem,) = _problems(report)
    assert "label 7 is out of range" in problem and "classes 0..2" in problem and FIX in problem
    with pytest.raises(AnnotationError, match=r"label 7 is out of range.*--dataset shards --root"):
        build_dataset("shards", shard_set, "test")  # training refuses it, and names the check to run


def test_a_folder_without_a_manifest_is_exit_2(tmp_path: Path) -> None:
    code, stderr = _check(tmp_path)
    assert code == 2 and "shards.json" in stderr and FIX in stderr


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """Python's file server (no Range requests: the whole file is answered and cut by the reader)."""

    def log_message(self, *args: object) -> None:
        pass


def test_a_shard_set_behind_a_url_is_checked_alike(clean: Path, shard_set: Path) -> None:
    (shard_set / "train-00003.tar").unlink()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(shard_set))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, report = _check(url)
    finally:
        server.shutdown()
    assert code == 1
    (problem,) = _problems(report)
    assert f"shard {url}/train-00003.tar of split 'train' is missing" in problem
    assert report["splits"] == _check(clean)[1]["splits"]
