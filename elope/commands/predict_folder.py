"""``elope predict --model FILE --out FOLDER [--ray [ADDRESS]]``: the answers as JSON-line part files
(:mod:`elope.tasks.predict_parts`), in this process or with Ray Data (:mod:`elope.tasks.ray_predict`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope.exported import file_sha256

__all__ = ["FolderOptions", "ImageSource", "folder_options", "is_ray_address", "predict_folder"]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

LOCAL = "local"  # the value of a bare --ray (elope.tasks.ray_predict.LOCAL)


def is_ray_address(value: str) -> bool:
    """Whether ``--ray``'s value names a Ray (``local``, ``auto``, ``ray://host:port``, ``host:port``) rather
    than being the first SOURCE (``--ray photos/``: click gives an optional value the next word)."""
    if value in (LOCAL, "auto") or value.startswith("ray://"):
        return True
    return re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", value) is not None and not Path(value).exists()


class ImageSource(click.Path):
    """An IMAGE_OR_DIR: an existing path, or the ``http(s)://`` / ``file://`` URL of a shard set (or of one
    of its ``.tar`` shards), read by byte range (:mod:`elope.data.shard_store`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and re.match(r"^(https?|file)://", value, re.IGNORECASE):
            return Path(value)  # "//" collapses: elope.data.shard_store.normalize_root restores it
        return super().convert(value, param, ctx)


def folder_options() -> list[Decorator]:
    """The options of the results-folder mode of ``elope predict``."""
    return [
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            help="Write one JSON line per image (the items of --json) into part files in this folder "
            "instead of printing; a second run skips the parts already written. Needs --model.",
        ),
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value=LOCAL,
            default=None,
            metavar="[ADDRESS]",
            help="With --out: predict with Ray Data. Alone: a local Ray started by the command; ADDRESS "
            "auto or ray://HOST:PORT: that cluster (images and model on storage every node sees). "
            'Needs `pip install "elope[ray]"`.',
        ),
        click.option(
            "--actors",
            default=2,
            show_default=True,
            type=click.IntRange(1, 4096),
            help="With --ray: actors, each with one onnxruntime session.",
        ),
        click.option(
            "--batch-size",
            default=16,
            show_default=True,
            type=click.IntRange(1, 4096),
            help="With --out: images per model call.",
        ),
        click.option(
            "--part-size",
            default=256,
            show_default=True,
            type=click.IntRange(1, 10**7),
            help="With --out: images per part file (the unit a second run skips).",
        ),
    ]


@dataclass(frozen=True)
class FolderOptions:
    """What the results-folder mode takes from the command's options."""

    model_file: Path
    sources: tuple[Path, ...]
    out: Path
    ray_address: str | None
    top: int
    tau: float | None
    device: str
    actors: int
    batch_size: int
    part_size: int
    progress: bool = True


def _write(o: FolderOptions, folder: Any, run: Any, shards: dict[Path, Any]) -> int:
    """The parts written, in this process or on Ray (``shards``: where the images of shard sets lie)."""
    if o.ray_address is None:
        from elope.tasks.predict_parts import predict_to_folder

        return predict_to_folder(
            folder, lambda: run, top=o.top, batch_size=o.batch_size, progress=o.progress, shards=shards
        )
    from elope.tasks.ray_predict import predict_on_ray

    try:
        return predict_on_ray(
            folder,
            o.model_file,
            top=o.top,
            address=o.ray_address,
            actors=o.actors,
            batch_size=o.batch_size,
            progress=o.progress,
            shards=shards,
        )
    except Exception as e:  # Ray's own errors (a worker that failed, a cluster not reached): one line
        if not type(e).__module__.startswith("ray"):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise click.ClickException(
            f"Ray failed ({type(e).__name__}: {first}); the parts written so far stay, run the command again "
            "to go on"
        ) from e


def predict_folder(o: FolderOptions) -> None:
    """Plan the parts, write those not written yet, say what was done; exit 1 when an image could not be
    read (its line holds the error)."""
    from elope.tasks.predict import load_predictor
    from elope.tasks.predict_parts import ResultsFolder, find_sources, plan_parts, read_lines

    shards: dict[Path, Any] = {}
    files, skipped = find_sources(o.sources, shards)
    for item in skipped:
        click.echo(f"{'error' if item.problem else 'skipped'}: {item.path}: {item.reason}", err=True)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, o.sources))}.")
    run = load_predictor(None, o.device, o.model_file, None, o.tau)  # the file checked before any work
    parts = plan_parts(files, o.part_size)
    folder = ResultsFolder(o.out, parts, model_sha256=file_sha256(o.model_file), top=o.top)
    written = _write(o, folder, run, shards)
    lines = read_lines(o.out)
    errors = sum("error" in line for line in lines)
    click.echo(
        f"{o.out}: {len(parts)} part(s), {len(lines)} line(s); {written} part(s) written now, "
        f"{len(parts) - written} already there"
        + (f"; {errors} image(s) could not be read" if errors else ""),
        err=True,
    )
    if errors or any(item.problem for item in skipped):
        sys.exit(1)
