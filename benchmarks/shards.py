"""Images per second reading a shard set (``elope data shard``) against reading the same images from their
folder, in one run (issue 29 item 2).

    python -m benchmarks.shards --json docs/experiments/cpu/shards.json
    python -m benchmarks.shards --num-images 300 --repeats 2 --num-workers 0   # quick

The same images, read as training reads them: ``elope.engine.loop.make_loader`` over the ``trainval``
split, one epoch in the training order of each (a seeded permutation of the folder's files,
:class:`elope.engine.sampling.EpochSampler`; the shard order of :class:`elope.engine.sampling.ShardSampler`
for the shards). Two pipelines each:

* ``bytes``: the image's bytes only (the file read / the byte range of its shard): what the storage costs;
* ``train``: decoded and augmented by the training transform at ``--input-size`` (what a run's
  DataLoader does).

Contenders are interleaved (``benchmarks.common.interleaved``) and the figure is the median paired ratio
of shards to folder images per second. Images come from a procedural set written at ``--image-size`` px
(``elope.data.write_synthetic``) unless ``--root`` points at one (``--dataset`` its layout), sharded with
``--shard-size`` images per shard into a temporary folder beside nothing else. A local folder in the page
cache is the case most favourable to the folder; shards pay on network and object storage (one request per
shard read rather than per image), which this machine cannot show.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from benchmarks.common import benchmark_main, environment, interleaved, measuring
from elope.data import build_dataset, train_transform, write_shards, write_synthetic
from elope.engine.loop import make_loader
from elope.engine.plan import LoaderSettings


class _Bytes(Dataset):
    """The bytes of each image of ``dataset`` (its file, or its byte range in a shard), not decoded."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.targets = dataset, dataset.targets
        self.shard_of = getattr(dataset, "shard_of", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[int, int, int]:
        data = self.dataset.image_bytes(i)
        if data is None:
            data = Path(self.dataset.samples[i][0]).read_bytes()
        return len(data), self.dataset.targets[i], 0


def _epoch(dataset: Any, batch: int, workers: int) -> Callable[[], int]:
    """One epoch of ``dataset`` in its training order; returns the images read."""
    settings = LoaderSettings(seed=0, workers=workers, pin_memory=False, rank=0, world_size=1)

    def run() -> int:
        return sum(
            len(labels) for _, labels, _ in make_loader(dataset, batch, settings, epoch=0, shuffle=True)
        )

    return run


def _contenders(root: Path, name: str, shards: Path, size: int, batch: int, workers: int) -> dict[str, Any]:
    """name -> (epoch callable, images per epoch)."""
    out = {}
    for source, (layout, where) in {"folder": (name, root), "shards": ("shards", shards)}.items():
        plain = build_dataset(layout, where, "trainval")
        augmented = build_dataset(layout, where, "trainval", train_transform(size))
        out[f"{source} bytes"] = _epoch(_Bytes(plain), batch, workers)
        out[f"{source} train"] = _epoch(augmented, batch, workers)
    return out


def run(
    num_images: int = 1000,
    image_size: int = 500,
    input_size: int = 448,
    shard_size: int = 100,
    batch_size: int = 16,
    workers: int = 0,
    repeats: int = 3,
    root: Path | None = None,
    dataset: str = "synthetic",
    threads: int | None = 1,
    flush_denormal: bool = True,
) -> dict[str, Any]:
    """Images per second of every contender (median over interleaved epochs) and the shard/folder ratios."""
    with measuring(threads, flush_denormal), tempfile.TemporaryDirectory() as tmp:
        if root is None:
            classes = 10
            print(f"writing {num_images} images of {image_size}x{image_size} px ...", flush=True)
            root = write_synthetic(
                Path(tmp) / "data",
                classes=classes,
                train=math.ceil(num_images / classes),
                test=1,
                size=image_size,
            )
        started = time.perf_counter()
        write_shards(dataset, root, Path(tmp) / "shards", shard_size=shard_size)
        shard_s = time.perf_counter() - started
        contenders = _contenders(root, dataset, Path(tmp) / "shards", input_size, batch_size, workers)
        images = contenders["folder bytes"]()
        timings = interleaved(contenders, repeats=repeats, warmup=1)
    rates = {name: images / timings.median(name) for name in timings}
    return {
        "benchmark": "shards",
        **{"images": images, "image_size": image_size, "input_size": input_size, "shard_size": shard_size},
        **{"batch_size": batch_size, "workers": workers, "threads": threads, "repeats": repeats},
        "write_shards_s": shard_s,
        "images_per_s": rates,
        "epoch_s": {name: list(seconds) for name, seconds in timings.items()},  # per repetition
        "ratio_shards_vs_folder": {
            kind: timings.ratio(f"folder {kind}", f"shards {kind}")["median_paired_ratio"]
            for kind in ("bytes", "train")
        },
        "environment": environment(),
    }


def report(result: dict[str, Any]) -> str:
    """Images per second of each contender and the shard/folder ratios."""
    lines = [
        f"\n{result['images']} images of {result['image_size']}px, {result['shard_size']} a shard, batch "
        f"{result['batch_size']}, workers {result['workers']}, median of {result['repeats']} interleaved epochs",
        f"{'contender':<16} {'images/s':>10}",
    ]
    lines += [f"{name:<16} {rate:>10.1f}" for name, rate in result["images_per_s"].items()]
    for kind, ratio in result["ratio_shards_vs_folder"].items():
        lines.append(f"shards / folder, {kind}: {ratio:.2f}x images/s (median paired ratio)")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-images", type=int, default=1000, help="images of the generated set")
    parser.add_argument("--image-size", type=int, default=500, help="side of the generated images")
    parser.add_argument("--input-size", type=int, default=448, help="network input of the train pipeline")
    parser.add_argument("--shard-size", type=int, default=100, help="images per shard")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", "--workers", dest="workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved epochs per contender")
    parser.add_argument("--root", type=Path, help="an existing dataset (else a synthetic one is written)")
    parser.add_argument("--dataset", default="synthetic", help="the layout of --root (elope's dataset names)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=1)


if __name__ == "__main__":
    main()
