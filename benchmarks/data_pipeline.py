"""Images per second of elope's training input pipeline beside a plain torchvision one, same images, same run.

    python -m benchmarks.data_pipeline --num-images 200 --num-workers 0
    python -m benchmarks.data_pipeline --image-size 1200 --num-workers 2   # large photos: draft decoding pays

Both pipelines do the paper's augmentation (Sec. 6): resize to 448x448, horizontal flip, rotation ±20°,
colour jitter 0.4/0.4/0.4 (elope adds PCA lighting noise, folded into its normalisation).

* baseline: ``torchvision.datasets.ImageFolder`` (PIL decode at full size) + ``torchvision.transforms``
  Resize, RandomHorizontalFlip, RandomRotation, ColorJitter, ToTensor, Normalize.
* elope: ``build_dataset(..., train_transform(448))``: JPEG draft decoding when the stored image is at
  least twice the input size, v2 geometric transforms on PIL images, colour jitter + lighting +
  normalisation fused into one colour-matrix op; the ground-truth boxes travel along (extra work the
  baseline does not do).
* elope, full decode: the same with draft decoding off (``decode_size=0``), to show what draft mode adds.
* elope crop stages, float source: the float pipeline at the crop source (2 × the input, 896 px for 448),
  as the crop and weighted stages read it before ``elope.data.source``: 4× the pixels per image, and an
  upsampling resize for every original smaller than 896 px.
* elope crop stages (uint8 source): what they read now (``elope.data.source``): the original capped at 896
  px per side, never enlarged, flipped and rotated in uint8, its colour jitter drawn as a 3x4 matrix;
  resizing to 896² and the colour map run on the device.
* ... + render on CPU: the same with the device step done in the collate (``SourceCollate(render=True)``),
  what a CPU-only run pays (there it runs in the DataLoader workers, in parallel).

Images come from a procedural set written at ``--image-size`` px (``elope.data.write_synthetic``) unless
``--root`` points at one. This is a benchmark, not a test: it prints numbers and never fails on them. Measured on 2 shared CPU
cores, workers 0: 500-px images 56 vs 58 images/s (1.03x, decoding and resizing dominate and cost the
same in both); 1024-px images 23 vs 44 images/s (1.87x, draft decoding).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder

from benchmarks.common import benchmark_main, measuring
from elope.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_dataset,
    crop_source_size,
    train_transform,
    write_synthetic,
)
from elope.data.source import SourceCollate

BASELINE = "torchvision ImageFolder + transforms"


def baseline_transform(size: int) -> T.Compose:
    return T.Compose(
        [
            T.Resize((size, size)),
            T.RandomHorizontalFlip(),
            T.RandomRotation(20),
            T.ColorJitter(0.4, 0.4, 0.4),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def _collate_baseline(batch):
    images, labels = zip(*batch)
    return torch.stack(images), torch.tensor(labels)


def images_per_second(dataset: Dataset, batch_size: int, workers: int, collate=None) -> float:
    """Iterate once over ``dataset``; the first batch (worker start-up, warm caches) is not timed."""
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, shuffle=False, collate_fn=collate
    )
    count, start = 0, None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
            continue
        count += len(batch[1])  # the labels: one per image whatever the image batch's type
    return count / (time.perf_counter() - start)


def _pipelines(root: Path, input_size: int, count: int) -> tuple[dict[str, tuple[Dataset, Any]], int]:
    """The pipelines compared, over the same first ``count`` images (fewer if the set is smaller): name ->
    (dataset, collate), and the number of images."""
    ours = build_dataset("synthetic", root, "trainval", train_transform(input_size))
    n = min(count, len(ours))
    full = build_dataset("synthetic", root, "trainval", train_transform(input_size), decode_size=0)
    side = crop_source_size(input_size)
    source_float = build_dataset("synthetic", root, "trainval", train_transform(side))
    source = build_dataset("synthetic", root, "trainval", train_transform(side, source=True))
    folder = ImageFolder(str(Path(ours.root) / "images"), transform=baseline_transform(input_size))
    where = {path: i for i, (path, _) in enumerate(folder.samples)}
    return {
        BASELINE: (Subset(folder, [where[p] for p, _ in ours.samples[:n]]), _collate_baseline),
        "elope, full decode (decode_size=0)": (Subset(full, range(n)), None),
        "elope (draft decode)": (Subset(ours, range(n)), None),
        # the crop stages read the crop source (2 x the input), which the crop is cut from (Sec. 5)
        f"elope crop stages, float {side}px source": (Subset(source_float, range(n)), None),
        "elope crop stages (uint8 source)": (Subset(source, range(n)), SourceCollate(side)),
        "  ... + render on CPU": (Subset(source, range(n)), SourceCollate(side, render=True)),
    }, n


def run(
    num_images: int = 200,
    workers: int = 0,
    batch_size: int = 14,
    input_size: int = 448,
    image_size: int = 500,
    repeats: int = 2,
    root: Path | None = None,
    threads: int | None = 1,
    flush_denormal: bool = True,
) -> dict[str, Any]:
    """Images per second of every pipeline (best of ``repeats`` alternating passes); a JSON-able dict."""
    with measuring(threads, flush_denormal), tempfile.TemporaryDirectory() as tmp:
        if root is None:
            classes = 10
            per_class = math.ceil((num_images + batch_size) / classes)
            print(f"writing {classes * per_class} images of {image_size}x{image_size} px ...", flush=True)
            root = write_synthetic(Path(tmp), classes=classes, train=per_class, test=1, size=image_size)
        pipelines, n = _pipelines(root, input_size, num_images + batch_size)
        best = dict.fromkeys(pipelines, 0.0)
        for _ in range(repeats):
            for name, (dataset, collate) in pipelines.items():
                best[name] = max(best[name], images_per_second(dataset, batch_size, workers, collate))
    return {
        "benchmark": "data_pipeline",
        "timed_images": n - batch_size,
        **{"image_size": image_size, "input_size": input_size, "batch_size": batch_size, "workers": workers},
        "threads": threads,
        "repeats": repeats,
        "images_per_s": best,
        "ratio": {name: rate / best[BASELINE] for name, rate in best.items()},
    }


def report(result: dict[str, Any]) -> str:
    """The pipelines' images per second and their ratio to the torchvision baseline."""
    lines = [
        f"\n{result['timed_images']} timed images of {result['image_size']}px -> {result['input_size']}px, batch "
        f"{result['batch_size']}, workers {result['workers']}, torch threads {result['threads']}, best of "
        f"{result['repeats']}",
        f"{'pipeline':<40} {'images/s':>9} {'vs baseline':>12}",
    ]
    for name, rate in result["images_per_s"].items():
        lines.append(f"{name:<40} {rate:>9.1f} {result['ratio'][name]:>11.2f}x")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-images", type=int, default=200, help="images per pass (default 200)")
    parser.add_argument(
        "--num-workers", "--workers", dest="workers", type=int, default=0, help="DataLoader workers"
    )
    parser.add_argument("--batch-size", type=int, default=14, help="batch size (the paper's 14)")
    parser.add_argument("--input-size", type=int, default=448, help="network input size (the paper's 448)")
    parser.add_argument(
        "--image-size", type=int, default=500, help="side of the generated images (default 500)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="passes per pipeline, alternating; best kept")
    parser.add_argument(
        "--root", type=Path, help="an existing synthetic set (else one is written to a temp dir)"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=1)


if __name__ == "__main__":
    main()
