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
    run_dir, model_file, images, split, dataset, root, zero_shot, out, batch_size, device, force = (
        o.run_dir,
        o.model_file,
        o.images,
        o.split,
        o.dataset,
        o.root,
        o.zero_shot,
        o.out,
        o.batch_size,
        o.device,
        o.force,
    )
    from elope.runs.layout import read_by_run
    from elope.tasks.embed import embed_paths, embed_split

    output_rules("elope embed", read=[model_file, *images, *read_by_run(run_dir, root)], force=force)
    checked_output(out, "--out")
    if (run_dir is None) == (model_file is None):
        raise click.UsageError("pass either --run RUN or --model FILE (from `elope export --embedding`).")
    if model_file is not None and not images:
        raise click.UsageError("--model embeds image files: pass IMAGE_OR_DIR... (a split needs --run)")
    if images and (dataset or root or zero_shot):
        raise click.UsageError("--dataset/--root/--zero-shot choose a split; not with IMAGE_OR_DIR arguments")
    with user_errors():
        try:
            if images:
                result = embed_paths(run_dir, images, device=device, batch_size=batch_size, model=model_file)
            else:
                options = {"zero_shot": zero_shot} if zero_shot else None
                result = embed_split(
                    run_dir, split, dataset, root, batch_size=batch_size, device=device, options=options
                )
        except (FileNotFoundError, ValueError) as error:
            raise click.ClickException(str(error)) from None
        result.save(out)
    n, dim = result.embeddings.shape
    click.echo(
        f"{n} embeddings of dimension {dim} ({len(result.means)} class means) written to {out}", err=True
    )
