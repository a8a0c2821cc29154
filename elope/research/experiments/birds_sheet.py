"""Contact sheets of the bird family: one PNG per preset, rows x columns images with their boxes.

    python -m elope.research.experiments.birds_sheet --out /tmp/birds_sheets [--size 448] [--cell 224]

Each cell is one image (class ``k mod classes``, its own seed) scaled to ``--cell`` pixels with the
ground-truth box in green; the title names the preset. ``--presets`` picks some presets (default: all).
docs/images/birds-presets.png was written with ``--presets small --rows 3 --cell 176 --mixed
docs/images/birds-presets.png`` (one column per preset).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from elope.data.birds.presets import BIRD_PRESETS
from elope.data.birds.scene import render_scene, sample_scene
from elope.data.birds.species import species_table


def sheet(preset: str, rows: int, cols: int, size: int, cell: int, seed: int) -> Image.Image:
    """One preset's contact sheet."""
    species = species_table(20, seed)
    knobs = BIRD_PRESETS[preset]
    canvas = Image.new("RGB", (cols * cell, rows * cell + 18), "white")
    pen = ImageDraw.Draw(canvas)
    pen.text((4, 3), f"birds-{preset}", fill="black")
    for k in range(rows * cols):
        width, height = (
            (size, round(size / knobs.aspect)) if knobs.aspect >= 1 else (round(size * knobs.aspect), size)
        )
        rendered = render_scene(
            sample_scene(np.random.default_rng([seed, k]), knobs, (width, height)), species[k % 20]
        )
        image = rendered.image.copy()
        ImageDraw.Draw(image).rectangle(
            [v - (i > 1) for i, v in enumerate(rendered.box)], outline=(0, 255, 0), width=2
        )
        image.thumbnail((cell, cell))
        canvas.paste(image, ((k % cols) * cell, 18 + (k // cols) * cell))
    return canvas


def mixed(rows: int, size: int, cell: int, seed: int) -> Image.Image:
    """One column per preset, ``rows`` images each, quantized to 256 colours (the docs' sheet)."""
    columns = [sheet(p, rows, 1, size, cell, seed + 1) for p in BIRD_PRESETS]
    canvas = Image.new("RGB", (len(columns) * (cell + 4), columns[0].height), "white")
    for i, column in enumerate(columns):
        canvas.paste(column, (i * (cell + 4), 0))
    return canvas.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--presets", default=",".join(BIRD_PRESETS))
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=6)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--cell", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mixed", type=Path, help="Also write one column per preset to this PNG (the docs')."
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mixed:
        mixed(args.rows, args.size, args.cell, args.seed).save(args.mixed, optimize=True)
        print(args.mixed)
    for preset in args.presets.split(","):
        path = args.out / f"birds-{preset}.png"
        sheet(preset, args.rows, args.cols, args.size, args.cell, args.seed).save(path)
        print(path)


if __name__ == "__main__":
    main()
