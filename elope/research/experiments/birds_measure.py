"""What each bird preset draws, measured (the table of docs/data-families.md).

    python -m elope.research.experiments.birds_measure [--images 30] [--size 448] [--seed 7]

Per preset over ``--images`` scenes: the box's longer side / the frame's (5th-95th percentile, median),
the class parts' share of the bird's pixels, the share of the bird hidden by occluders (mean, max), the
lookalikes per image and the time per image (render only, one process).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from elope.data.birds import BIRD_PRESETS, species_table
from elope.data.birds.scene import render_scene, sample_scene


def measure(preset: str, images: int, size: int, seed: int) -> str:
    """One preset's line."""
    species = species_table(20, 0)
    fraction, parts, hidden, lookalikes = [], [], [], []
    start = time.perf_counter()
    for k in range(images):
        scene = sample_scene(np.random.default_rng([seed, k]), BIRD_PRESETS[preset], (size, size))
        rendered = render_scene(scene, species[k % 20])
        x1, y1, x2, y2 = rendered.box
        fraction.append(max(x2 - x1, y2 - y1) / size)
        parts.append(rendered.evidence.sum() / rendered.bird.sum())
        front = np.zeros(rendered.bird.shape, bool)
        for layer in scene.front:
            front |= layer.in_frame(layer.alpha > 0, size, size)
        hidden.append((front & rendered.bird).sum() / rendered.bird.sum())
        lookalikes.append(len(scene.lookalikes))
    ms = 1000 * (time.perf_counter() - start) / images
    lo, mid, hi = np.percentile(fraction, [5, 50, 95])
    return (
        f"{preset:10s} box/frame {lo:.2f}-{hi:.2f} (median {mid:.2f}) | class parts {100 * np.mean(parts):.0f} % "
        f"of bird px | hidden {100 * np.mean(hidden):.0f} % (max {100 * np.max(hidden):.0f}) | "
        f"lookalikes {np.mean(lookalikes):.1f} | {ms:.0f} ms/image"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for preset in BIRD_PRESETS:
        print(measure(preset, args.images, args.size, args.seed))


if __name__ == "__main__":
    main()
