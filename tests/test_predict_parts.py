"""``elope predict --model FILE SOURCE... --out FOLDER``: one JSON line per image in part files, the same
answers as ``elope predict --model`` (from folders, image files, list files and shard sets: a shard set's
lines are the folder's but for their paths), resumable (written parts skipped, another plan refused);
``--ray``'s value told from a SOURCE; a missing Ray named with its extra; Ray Serve's batcher keeps the
built-in one's queue limit. Ray itself runs in tests/test_ray.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnxruntime")

from elope.cli import main
from elope.commands.predict_folder import is_ray_address
from elope.tasks.predict import predict_paths
from elope.tasks.predict_parts import PLAN_NAME, find_sources, read_lines


def _predict(*args: str):
    return CliRunner().invoke(main, ["predict", *map(str, args)])


def test_folder_lines_equal_predict_model_and_resume(served_onnx, synthetic_root, tmp_path):
    images = synthetic_root / "CUB_200_2011" / "images"
    out = tmp_path / "results"
    result = _predict("--model", served_onnx, images, "--out", out, "--part-size", 5, "--top", 3)
    assert result.exit_code == 0, result.output
    files, _ = find_sources([images])
    expected = predict_paths(None, files, top=3, model=served_onnx)
    assert read_lines(out) == expected  # one process, batched by 16: the very answers
    assert len({tuple(c["index"] for c in item["classes"]) for item in expected}) > 1
    parts = sorted(out.glob("part-*.jsonl"))
    assert len(parts) == 4 and json.loads((out / PLAN_NAME).read_text())["images"] == len(files) == 18
    first = parts[0].stat().st_mtime_ns
    parts[2].unlink()  # as an interrupted run leaves it: the others are whole
    again = _predict("--model", served_onnx, images, "--out", out, "--part-size", 5, "--top", 3)
    assert again.exit_code == 0 and "1 part(s) written now, 3 already there" in again.output
    assert parts[0].stat().st_mtime_ns == first and read_lines(out) == expected
    other = _predict("--model", served_onnx, images, "--out", out, "--part-size", 5, "--top", 2)
    assert other.exit_code == 1 and "holds the parts of another prediction (top differ" in other.output


def same_lines_as_folder(shard_lines, folder_lines, shard_set) -> None:
    """Each image of the shard set has the line of the same image (the same bytes) in the folder source,
    but for its path (``SHARD/MEMBER``)."""
    from elope.data.shard_store import ShardStore
    from elope.data.shards import read_member

    shards = {}
    find_sources([shard_set], shards)
    store = ShardStore(shard_set)
    by_bytes = {hashlib.sha256(Path(line["path"]).read_bytes()).digest(): line for line in folder_lines}
    assert len(shard_lines) == len(by_bytes) == 18
    for line in shard_lines:
        root, location = shards[Path(line["path"])]
        assert Path(root) == shard_set and line["path"].startswith(str(shard_set / location[0]))
        twin = by_bytes.pop(hashlib.sha256(read_member(store, location)).digest())
        assert {**line, "path": twin["path"]} == twin
    assert not by_bytes


def test_shard_set_lines_equal_predict_model_and_folder_and_resume(
    served_onnx, synthetic_root, synthetic_shards, tmp_path
):
    out = tmp_path / "results"
    args = ("--model", served_onnx, "--out", out, "--part-size", 5, "--top", 3)
    result = _predict(synthetic_shards, *args)
    assert result.exit_code == 0, result.output
    expected = predict_paths(None, [synthetic_shards], top=3, model=served_onnx)
    assert read_lines(out) == expected and all(".tar/" in e["path"] for e in expected)
    images = synthetic_root / "CUB_200_2011" / "images"
    same_lines_as_folder(expected, predict_paths(None, [images], top=3, model=served_onnx), synthetic_shards)
    parts = sorted(out.glob("part-*.jsonl"))
    parts[1].unlink()
    again = _predict(synthetic_shards, *args)
    assert again.exit_code == 0 and "1 part(s) written now, 3 already there" in again.output
    assert read_lines(out) == expected
    one = _predict(synthetic_shards / "test-00001.tar", "--model", served_onnx, "--out", tmp_path / "one")
    assert one.exit_code == 0, one.output
    assert read_lines(tmp_path / "one") == predict_paths(
        None, [synthetic_shards / "test-00001.tar"], model=served_onnx
    )
    assert len(read_lines(tmp_path / "one")) == 1


def test_shard_set_behind_a_url(served_onnx, synthetic_shards, tmp_path):
    """The URL of a shard set (any static file server): the lines of its folder, named by URL."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no access log on the test's output
            pass

    handler = functools.partial(Quiet, directory=str(synthetic_shards))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = _predict("--model", served_onnx, f"{url}/", "--out", tmp_path / "web", "--top", 3)
        assert result.exit_code == 0, result.output
        lines = read_lines(tmp_path / "web")
        one = predict_paths(None, [f"{url}/test-00001.tar"], top=3, model=served_onnx)  # one shard's
        assert one == [line for line in lines if "/test-00001.tar/" in line["path"]] and len(one) == 1
    finally:
        server.shutdown()
    local = predict_paths(None, [synthetic_shards], top=3, model=served_onnx)
    assert lines == [{**e, "path": e["path"].replace(str(synthetic_shards), url)} for e in local]
    assert lines[0]["path"].startswith(f"{url}/test-00000.tar/")


def test_list_file_and_unreadable_line(served_onnx, synthetic_root, tmp_path):
    images = sorted((synthetic_root / "CUB_200_2011" / "images").rglob("*.jpg"))[:3]
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# three photos and a missing one\n" + "\n".join(map(str, images)) + "\n\nmissing.jpg\n"
    )
    result = _predict("--model", served_onnx, listing, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "1 image(s) could not be read" in result.output
    lines = read_lines(tmp_path / "out")
    assert [line["path"] for line in lines] == [*map(str, images), str(tmp_path / "missing.jpg")]
    assert "error" in lines[-1] and lines[:3] == predict_paths(None, images, model=served_onnx)


def test_ray_value_or_source():
    assert is_ray_address("local") and is_ray_address("auto") and is_ray_address("ray://head:10001")
    assert is_ray_address("10.0.0.5:6379")
    assert not is_ray_address("photos/") and not is_ray_address("list.txt")


def test_options_that_need_model_and_out(served_onnx, synthetic_root, tmp_path):
    no_out = _predict("--model", served_onnx, "--ray", synthetic_root)
    assert no_out.exit_code == 2 and "--out FOLDER" in no_out.output
    vis = _predict("--model", served_onnx, synthetic_root, "--out", tmp_path / "o", "--json")
    assert vis.exit_code == 2 and "--json" in vis.output


def test_missing_ray_names_the_extra(served_onnx, synthetic_root, tmp_path, monkeypatch):
    """Without Ray (its import blocked), --ray says which extra to install, in one line."""
    monkeypatch.setitem(sys.modules, "ray", None)
    result = _predict("--model", served_onnx, "--ray", synthetic_root, "--out", tmp_path / "o")
    assert result.exit_code == 1 and 'pip install "elope[ray]"' in result.output, result.output


def test_serve_batcher_refuses_past_its_queue():
    """Ray Serve's batcher keeps the built-in one's queue limit and counts its batches (no Ray needed)."""
    from elope.serve.batching import QueueFull
    from elope.serve.ray_serve import ServeBatcher

    async def call(array):
        await asyncio.sleep(0.01)
        return {"scores": array.sum()}

    async def scenario():
        batcher = ServeBatcher(call, max_queue=3)
        futures = batcher.submit([np.ones(2), np.zeros(2)])
        with pytest.raises(QueueFull):
            batcher.submit([np.ones(2), np.ones(2)])
        rows = await asyncio.gather(*futures)
        return batcher, [float(r["scores"]) for r in rows]

    batcher, scores = asyncio.run(scenario())
    assert scores == [2.0, 0.0] and batcher.queued == 0
