"""``elope data shard``: write a dataset as WebDataset tar shards (:mod:`elope.data.shards`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from elope.commands.options import SEED_RANGE, checked_output, output_rules
from elope.config import DATASETS

__all__ = ["shard_command"]

_SOURCES = [name for name in DATASETS if name != "shards"]


@click.command("shard", short_help="Write a dataset as WebDataset tar shards.")
@click.option(
    "--dataset",
    "name",
    required=True,
    type=click.Choice(_SOURCES),
    help="Dataset layout (synthetic = the CUB layout written by `elope data synth`).",
)
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Where the dataset lies.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder of the shard set.")
@click.option(
    "--shard-size",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Images per shard (1000 fine-grained JPEGs: about 100 MB).",
)
@click.option(
    "--seed", type=SEED_RANGE, default=0, show_default=True, help="How the images are shuffled across shards."
)
@click.option(
    "--annotation-level",
    type=click.Choice(["variant", "family", "manufacturer"]),
    default="variant",
    show_default=True,
    help="FGVC-Aircraft only: which labels the shards carry.",
)
@click.option("--force", is_flag=True, help="Replace a shard set written there before.")
def shard_command(
    name: str, root: Path, out: Path, shard_size: int, seed: int, annotation_level: str, force: bool
) -> None:
    """Write every split of a dataset as tar shards (image, label, box, id) with a manifest, shards.json.

    Read them with --dataset shards --root OUT (or a URL of OUT) in train, evaluate and embed.
    """
    from elope.data.errors import DataError
    from elope.data.shard_write import write_shards
    from elope.data.shards import MANIFEST

    if (out / MANIFEST).exists() and not force:
        raise click.ClickException(
            f"--out {out}: a shard set is already there ({out / MANIFEST}); pass --force to replace it, or "
            "choose another folder"
        )
    output_rules("elope data shard", read=[root], own=[out], force=force)
    checked_output(out, "--out", kind="dir")
    options = {"annotation_level": annotation_level} if name == "aircraft" else {}
    progress = _progress(name)
    try:
        manifest = write_shards(
            name, root, out, shard_size=shard_size, seed=seed, options=options, progress=progress
        )
    except (ValueError, DataError) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(
            f"cannot write the shard set to {out}: {error.strerror or error}"
        ) from None
    for split, part in manifest["splits"].items():
        images = sum(s["count"] for s in part["shards"])
        size = sum(s["bytes"] for s in part["shards"]) / 1e6
        click.echo(f"{split}: {images} images in {len(part['shards'])} shard(s), {size:.1f} MB")
    click.echo(f"manifest: {out / MANIFEST}")
    click.echo(f"use it with: --dataset shards --root {out}")


def _progress(name: str) -> object:
    """A tqdm bar over the shards of each split, on a terminal only."""
    if not sys.stderr.isatty():
        return lambda items: items
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=f"{name} shards", unit="shard", leave=False)
