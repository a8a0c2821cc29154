"""Shard sets (``elope data shard``, ``--dataset shards``): written from any dataset, read back item for
item, from a folder or a URL; a damaged or missing shard named; the training order per seed, per process
and after a resume (:class:`elope.engine.sampling.ShardSampler`)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import tarfile
import threading
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner
from train_helpers import write_tiny_synthetic

from elope.cli import main
from elope.data import build_dataset, write_shards
from elope.data.errors import DatasetNotFoundError, ImageLoadError
from elope.engine.sampling import ShardSampler


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_tiny_synthetic(tmp_path_factory.mktemp("data") / "data")


@pytest.fixture(scope="module")
def shards(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "set"
    write_shards("synthetic", source, out, shard_size=5)
    return out


def _same_items(a, b) -> None:
    assert a.classes == b.classes and a.targets == b.targets and len(a) == len(b) > 0
    for i in range(len(a)):
        (x, y, box), (x2, y2, box2) = a[i], b[i]
        assert torch.equal(x, x2) and y == y2 and torch.equal(box.isnan(), box2.isnan())
        assert torch.allclose(box.nan_to_num(), box2.nan_to_num())


@pytest.mark.parametrize("split", ["train", "val", "test", "trainval"])
def test_a_shard_set_reads_as_its_source(source, shards, split):
    _same_items(build_dataset("synthetic", source, split), build_dataset("shards", shards, split))


def test_shards_are_webdataset_tar_files_with_a_manifest(shards):
    manifest = json.loads((shards / "shards.json").read_text())
    assert manifest["source"]["dataset"] == "synthetic" and manifest["has_boxes"] is True
    counts = [s["count"] for s in manifest["splits"]["train"]["shards"]]
    assert counts == [5, 5, 5, 3]  # 18 training images, 5 a shard
    with tarfile.open(shards / "train-00000.tar") as tar:
        names = tar.getnames()
        assert len(names) == 15 and names[0].endswith((".jpg", ".png"))
        key = names[0].rsplit(".", 1)[0]
        assert names[1:3] == [f"{key}.cls", f"{key}.json"]  # one key, three extensions
        meta = json.loads(tar.extractfile(f"{key}.json").read())
        assert int(tar.extractfile(f"{key}.cls").read()) == meta["label"] and len(meta["box"]) == 4
    # the images lie shuffled across the shards: a shard holds more than one class
    samples = manifest["splits"]["train"]["samples"]
    assert len({label for label, s in zip(samples["label"], samples["shard"]) if s == 0}) > 1


def test_the_same_dataset_and_seed_give_the_same_bytes(source, shards, tmp_path):
    again = write_shards("synthetic", source, tmp_path / "again", shard_size=5)
    first = json.loads((shards / "shards.json").read_text())
    assert [s["sha256"] for s in again["splits"]["train"]["shards"]] == [
        s["sha256"] for s in first["splits"]["train"]["shards"]
    ]


def test_a_missing_or_damaged_shard_is_named_with_the_fix(source, tmp_path):
    out = tmp_path / "set"
    write_shards("synthetic", source, out, shard_size=5)
    shard = out / "train-00001.tar"
    data = bytearray(shard.read_bytes())
    shard.unlink()
    with pytest.raises(
        DatasetNotFoundError, match=r"train-00001\.tar of split 'train' is missing.*elope data shard"
    ):
        build_dataset("shards", out, "train")
    shard.write_bytes(bytes(data[:-512]))
    with pytest.raises(DatasetNotFoundError, match=r"train-00001\.tar .* has \d+ bytes, the manifest says"):
        build_dataset("shards", out, "train")
    data[0:20] = b"something-else.jpg\0\0"  # the first member's name: same size, other contents
    shard.write_bytes(bytes(data))
    dataset = build_dataset("shards", out, "trainval")
    columns = json.loads((out / "shards.json").read_text())["splits"]["train"]["samples"]
    at = next(
        p for p, (n, offset) in enumerate(zip(columns["shard"], columns["offset"])) if (n, offset) == (1, 512)
    )
    member = f"{shard}/{columns['key'][at]}.{columns['ext'][at]}"  # the shard's first image
    first = next(i for i, (path, _) in enumerate(dataset.samples) if path == member)
    with pytest.raises(
        ImageLoadError, match=r"train-00001\.tar: expected .* found member 'something-else.jpg'.*--force"
    ):
        dataset[first]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """Python's file server: no Range requests (the whole file is answered), one connection a request."""

    def log_message(self, *args: object) -> None:
        pass


class _Ranges(_Quiet):
    """A file server that answers Range requests (206) on kept-alive HTTP/1.1 connections, and counts
    them by the client's port."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        ranged = self.headers.get("Range")
        if ranged is None:
            return super().do_GET()
        start, end = map(int, ranged.removeprefix("bytes=").split("-"))
        with open(self.translate_path(self.path), "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        _Ranges.ports.append(self.client_address[1])


@contextlib.contextmanager
def _serving(handler, folder):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_a_shard_set_is_read_from_a_url(source, shards):
    with _serving(_Ranges, shards) as url:
        _same_items(build_dataset("synthetic", source, "test"), build_dataset("shards", url, "test"))
        assert len(_Ranges.ports) == 6 and len(set(_Ranges.ports)) == 1  # a range a image, one connection
    with _serving(_Quiet, shards) as url:  # no Range support: the whole shard, cut
        _same_items(build_dataset("synthetic", source, "test"), build_dataset("shards", url, "test"))
        # a click path option collapses the URL's //; file: URLs are local paths
        assert len(build_dataset("shards", url.replace("//", "/", 1), "test")) == 6
    assert len(build_dataset("shards", f"file://{shards}", "test")) == 6


def test_the_command_writes_a_set_and_refuses_to_overwrite_one(source, tmp_path):
    out = tmp_path / "cli"
    args = [
        "data",
        "shard",
        "--dataset",
        "synthetic",
        "--root",
        str(source),
        "--out",
        str(out),
        "--shard-size",
        "10",
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "train: 18 images in 2 shard(s)" in first.output and "--dataset shards --root" in first.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "pass --force" in again.output
    smaller = CliRunner().invoke(main, [*args[:-1], "20", "--force"])
    assert smaller.exit_code == 0, smaller.output
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-00000.tar", "train-00000.tar"]  # none stale
    inside = CliRunner().invoke(main, [*args[:6], "--out", str(source / "shards")])
    assert inside.exit_code != 0 and "reads" in inside.output  # never into the dataset it reads


SHARD_OF = [i % 7 for i in range(40)]  # 40 items in 7 shards


def _keys(**options):
    return ShardSampler(SHARD_OF, 8, **options).keys()


def test_the_order_is_fixed_by_seed_and_epoch():
    assert _keys(seed=1, epoch=2) == _keys(seed=1, epoch=2)
    assert _keys(seed=1, epoch=2) != _keys(seed=1, epoch=3) != _keys(seed=2, epoch=3)
    order = [SHARD_OF[i] for _, i in _keys(seed=1)]
    runs = sum(1 for a, b in itertools.pairwise(order) if a != b) + 1
    assert runs <= 7  # shard by shard: the items of a shard come together


def test_each_process_reads_its_own_shards_and_all_of_them_meet():
    ranks = [_keys(seed=3, rank=r, world_size=2) for r in (0, 1)]
    one = _keys(seed=3)
    assert sorted(ranks[0] + ranks[1]) == sorted(one) and not set(ranks[0]) & set(ranks[1])
    shards = [{SHARD_OF[i] for _, i in keys} for keys in ranks]
    assert len(shards[0] & shards[1]) <= 1  # one shard at most is shared, at the boundary


def test_fixed_streams_give_the_same_global_batches_on_one_and_two_processes():
    one = _keys(seed=4, streams=2)
    r0, r1 = (_keys(seed=4, streams=2, rank=r, world_size=2) for r in (0, 1))
    assert one == [k for t in range(5) for k in r0[4 * t : 4 * t + 4] + r1[4 * t : 4 * t + 4]]
    with pytest.raises(ValueError, match="shard_streams=3"):
        ShardSampler(SHARD_OF, 8, streams=3, world_size=2)


def test_a_resumed_epoch_continues_where_it_stopped():
    whole = list(ShardSampler(SHARD_OF, 8, seed=5, epoch=1, rank=1, world_size=2))
    resumed = list(ShardSampler(SHARD_OF, 8, seed=5, epoch=1, rank=1, world_size=2, skip_batches=3))
    assert resumed == whole[3 * 4 :] and len(resumed) == 2 * 4


def test_the_webdataset_library_reads_the_shards(shards):
    wds = pytest.importorskip("webdataset")
    manifest = json.loads((shards / "shards.json").read_text())
    columns = manifest["splits"]["test"]["samples"]
    urls = [str(shards / s["file"]) for s in manifest["splits"]["test"]["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(columns["key"])
    for sample in samples:
        at = columns["key"].index(sample["__key__"])
        assert int(sample["cls"]) == columns["label"][at] == json.loads(sample["json"])["label"]
        assert len(sample[columns["ext"][at]]) == columns["size"][at]


def test_dataloader_workers_read_their_own_file_handles(shards):
    dataset = build_dataset("shards", shards, "trainval")
    dataset[0]  # the parent opens a shard first: workers must not share its file offset
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=list)
    items = [item for batch in loader for item in batch]
    assert [label for _, label, _ in items] == dataset.targets
    assert all(torch.equal(image, dataset[i][0]) for i, (image, _, _) in enumerate(items))
