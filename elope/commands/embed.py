"""``elope embed``: the embeddings of a split or of image files, to a ``.npz`` (:mod:`elope.tasks.embed`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope.commands.options import (
    BATCH_RANGE,
    checked_output,
    force_option,
    model_file_option,
    output_rules,
    run_option,
    user_errors,
)
from elope.data.splits import SPLITS


@dataclass(frozen=True)
class EmbedOptions:
    """The options of ``elope embed``, as click passes them."""

    run_dir: Path | None
    model_file: Path | None
    images: tuple[Path, ...]
    split: str
    dataset: str | None
    root: Path | None
    zero_shot: str | None
    out: Path
    batch_size: int
    device: str
    force: bool


@click.command("embed", short_help="Embeddings of a split or of image files, to .npz.")
@run_option(required=False)
@model_file_option("Instead of --run (with IMAGE_OR_DIR...): a file of `elope export --embedding`.")
@click.argument("images", nargs=-1, metavar="[IMAGE_OR_DIR...]", type=click.Path(exists=True, path_type=Path))
@click.option("--split", default="test", show_default=True, type=click.Choice(SPLITS), help="Split to embed.")
@click.option("--dataset", default=None, help="Dataset name. Default: the run's.")
@click.option(
    "--root", default=None, type=click.Path(path_type=Path), help="Dataset root. Default: the run's."
)
@click.option(
    "--zero-shot",
    default=None,
    type=click.Choice(["seen", "unseen"]),
    help="One half of the classes, every image of it (the metric-learning protocol; elope.data.zero_shot).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The .npz file to write.")
@click.option("--batch-size", default=16, show_default=True, type=BATCH_RANGE, help="Images per batch.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda.")
@force_option()
def embed_command(**given: Any) -> None:
    """Write the embedding of every image of a split (or of IMAGE_OR_DIR...) with labels, paths and the
    class means to an .npz (format: elope/tasks/embed.py, docs/usage.md "Reports, the embedding").

    Example: elope embed --run runs/cub --split test --out emb.npz
    """
    o = EmbedOptions(**given)
    from elope.runs.layout import read_by_run
    from elope.tasks.embed import embed_paths, embed_split

    output_rules(
        "elope embed", read=[o.model_file, *o.images, *read_by_run(o.run_dir, o.root)], force=o.force
    )
    checked_output(o.out, "--out")
    if (o.run_dir is None) == (o.model_file is None):
        raise click.UsageError("pass either --run RUN or --model FILE (from `elope export --embedding`).")
    if o.model_file is not None and not o.images:
        raise click.UsageError("--model embeds image files: pass IMAGE_OR_DIR... (a split needs --run)")
    if o.images and (o.dataset or o.root or o.zero_shot):
        raise click.UsageError("--dataset/--root/--zero-shot choose a split; not with IMAGE_OR_DIR arguments")
    with user_errors():
        try:
            if o.images:
                result = embed_paths(
                    o.run_dir, o.images, device=o.device, batch_size=o.batch_size, model=o.model_file
                )
            else:
                options = {"zero_shot": o.zero_shot} if o.zero_shot else None
                result = embed_split(
                    o.run_dir,
                    o.split,
                    o.dataset,
                    o.root,
                    batch_size=o.batch_size,
                    device=o.device,
                    options=options,
                )
        except (FileNotFoundError, ValueError) as error:
            raise click.ClickException(str(error)) from None
        result.save(o.out)
    n, dim = result.embeddings.shape
    click.echo(
        f"{n} embeddings of dimension {dim} ({len(result.means)} class means) written to {o.out}", err=True
    )
