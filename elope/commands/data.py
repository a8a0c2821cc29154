"""``elope data``: ``check`` a dataset, ``synth`` the procedural fine-grained set, ``shard`` a dataset as tar
shards (:mod:`elope.commands.data_shard`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from elope.commands.options import SEED_RANGE, FiniteFloatRange, checked_output, output_rules, renamed_option
from elope.config import DATASETS
from elope.data.birds.presets import BIRD_PRESETS
from elope.data.errors import DataError
from elope.data.synthetic_knobs import DIFFICULTIES, KNOB_OPTIONS
from elope.pixels import DEFAULT_MAX_PIXELS

__all__ = ["MAX_PER_CLASS", "MAX_PIXELS_LIMIT", "data"]

#: ``data synth``: the most images per class and split (72 classes x 10,000 is already 720,000 files).
MAX_PER_CLASS = 10_000
#: ``data check --max-pixels``: the largest cap (a billion pixels decode to 3 GB of RGB).
MAX_PIXELS_LIMIT = 1_000_000_000


@click.group("data")
def data() -> None:
    """Inspect datasets and write the procedural one."""


@data.command("check", short_help="Count a dataset's images and boxes; list its problems.")
@click.option(
    "--dataset",
    "name",
    required=True,
    type=click.Choice(DATASETS),
    help="Dataset layout (synthetic = the CUB layout written by `elope data synth`; shards = a shard set "
    "written by `elope data shard`: every shard's size and SHA-256 as its manifest says, then every image).",
)
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Where the dataset lies.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--annotation-level",
    type=click.Choice(["variant", "family", "manufacturer"]),
    default="variant",
    show_default=True,
    help="FGVC-Aircraft only: which labels to check.",
)
@click.option(
    "--no-decode",
    is_flag=True,
    help="Only read image headers (fast; misses truncated files). Every file is still read once, to find copies.",
)
@renamed_option(
    "--threads",
    "--workers",  # the name in elope 0.1.0 (elsewhere --num-workers are DataLoader processes): a hidden alias
    dest="threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Decoding threads [min(8, CPUs)].",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1, MAX_PIXELS_LIMIT),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="An image with more pixels is a problem (training refuses it too).",
)
def check_command(
    name: str,
    root: Path,
    as_json: bool,
    annotation_level: str,
    no_decode: bool,
    threads: int | None,
    max_pixels: int,
) -> None:
    """Count images and boxes per split and list every problem of a dataset.

    Exit status: 0 no problem, 1 problems found, 2 the dataset cannot be read at all.
    """
    from elope.data.check import check_dataset

    options = {"annotation_level": annotation_level} if name == "aircraft" else {}
    progress = None
    if not as_json and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm
    try:
        report = check_dataset(
            name,
            root,
            decode=not no_decode,
            max_pixels=max_pixels,
            threads=threads,
            progress=progress,
            **options,
        )
    except DataError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"{name} dataset at {report.root}")
        click.echo(f"classes: {report.num_classes}")
        click.echo(f"{'split':<10} {'images':>8} {'boxes':>8}")
        for split, counts in report.splits.items():
            click.echo(f"{split:<10} {counts['images']:>8} {counts['boxes']:>8}")
        if report.ok:
            click.echo("no problems found")
        else:
            click.echo(f"{len(report.problems)} problem(s):")
            for problem in report.problems:
                click.echo(f"  {problem.path}: {problem.problem}")
    sys.exit(0 if report.ok else 1)


def _say_what_force_deletes(out: Path) -> None:
    """``--force`` deletes only what the earlier set wrote; it says so, and names the files it keeps."""
    from elope.data.synthetic_files import written_files

    if not (out / "elope_synthetic.json").is_file():
        return
    written = written_files(out)
    base = out / "CUB_200_2011"
    theirs = {p.resolve() for p in written}
    kept = (
        sorted(p for p in base.rglob("*") if p.is_file() and p.resolve() not in theirs)
        if base.is_dir()
        else []
    )
    click.echo(
        f"--force: deleting the {len(written)} file(s) the earlier synthetic set wrote in {out} "
        f"(elope_synthetic.json, CUB_200_2011/*.txt, its images)"
        + (
            f"; keeping {len(kept)} other file(s): {', '.join(str(p.relative_to(out)) for p in kept[:10])}"
            if kept
            else ""
        ),
        err=True,
    )


class _Counts(click.ParamType):
    """``N`` (every class) or ``N1,N2,...`` (one count per class), each in 1..:data:`MAX_PER_CLASS`."""

    name = "N|N1,N2,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, list)):
            return value
        try:
            counts = [int(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a count nor a comma-separated list of counts", param, ctx)
        if min(counts) < 1 or max(counts) > MAX_PER_CLASS:
            self.fail(f"{value!r}: every count must lie in 1..{MAX_PER_CLASS}", param, ctx)
        return counts[0] if len(counts) == 1 else counts


def _knob_type(kind: object, bounds: tuple[float, float] | None) -> Any:
    """The click type of one knob: a choice, or a range (a pair of ranges) within its bounds."""
    if isinstance(kind, tuple) and all(isinstance(k, str) for k in kind):
        return click.Choice(kind)
    if isinstance(kind, tuple):
        return click.Tuple([_knob_type(k, bounds) for k in kind])
    low, high = bounds if bounds is not None else (None, None)
    return click.IntRange(low, high) if kind is int else FiniteFloatRange(low, high)


def _knob_options(command: Callable[..., None]) -> Callable[..., None]:
    """One ``--<knob>`` option per difficulty knob of :data:`elope.data.synthetic_knobs.KNOB_OPTIONS`
    (default: the preset's value), bounded as :class:`elope.data.synthetic_knobs.Difficulty` checks it."""
    for name, (kind, bounds, text) in reversed(KNOB_OPTIONS.items()):
        if bounds is not None and isinstance(kind, tuple):
            text = f"{text[:-1]}, each in [{bounds[0]:g}, {bounds[1]:g}]."  # click shows no range of a pair
        option = click.option(
            f"--{name.replace('_', '-')}", name, type=_knob_type(kind, bounds), default=None, help=text
        )
        command = option(command)
    return command


@data.command("synth", short_help="Write the procedural fine-grained dataset.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Destination folder.")
@click.option(
    "--classes", type=click.IntRange(2, 72), default=10, show_default=True, help="Number of classes."
)
@click.option(
    "--train",
    type=_Counts(),
    default="30",
    show_default=True,
    help="Training images per class, or one count per class, comma-separated (a long-tailed set: 40,40,4,4); "
    "each 1-10000.",
)
@click.option(
    "--test",
    type=click.IntRange(1, MAX_PER_CLASS),
    default=20,
    show_default=True,
    help="Test images per class.",
)
@click.option(
    "--size", type=click.IntRange(32, 4096), default=128, show_default=True, help="Image side in pixels."
)
@click.option("--seed", type=SEED_RANGE, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace a synthetic dataset written there before: only the files it wrote are deleted (listed); "
    "files you added are kept.",
)
@click.option(
    "--difficulty",
    type=click.Choice(list(DIFFICULTIES)),
    default="default",
    show_default=True,
    help="Preset of the knobs below (fine: for ImageNet-pretrained backbones, --size 224 --classes 24; "
    "small ... wide: the generalization suite's distributions, `elope suite`).",
)
@click.option(
    "--family",
    type=click.Choice(["critters", "birds"]),
    default="critters",
    show_default=True,
    help="critters: the set the recipe was developed on; birds: the held-out family (articulated birds on "
    "photographs, classes told apart by crest, bill, eye ring, wing bars and tail tip; needs scikit-image: "
    "pip install 'elope[birds]'). See docs/data-families.md.",
)
@click.option(
    "--preset",
    type=click.Choice(list(BIRD_PRESETS)),
    default=None,
    help="The bird family's preset [medium] (--family birds; the critters' presets are --difficulty).",
)
@_knob_options
def synth_command(
    out: Path,
    classes: int,
    train: int | list[int],
    test: int,
    size: int,
    seed: int,
    force: bool,
    difficulty: str,
    family: str,
    preset: str | None,
    **knobs: Any,
) -> None:
    """Write a procedural fine-grained dataset (CUB-200-2011 layout, exact boxes): the critters (default)
    or the held-out bird family (--family birds --preset NAME)."""
    write = (
        _bird_writer(difficulty, preset, knobs)
        if family == "birds"
        else _critter_writer(preset, difficulty, knobs)
    )
    output_rules("elope data synth", own=[out])
    checked_output(out, "--out", kind="dir")
    if force:
        _say_what_force_deletes(out)
    try:
        root = write(out, classes, train, test, size, seed, overwrite=force)
    except (FileExistsError, ValueError, DataError) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:  # e.g. a file where a parent folder should be
        raise click.ClickException(f"cannot write the data set to {out}: {error.strerror or error}") from None
    total = (classes * train if isinstance(train, int) else sum(train)) + classes * test
    width, height = json.loads((root / "elope_synthetic.json").read_text(encoding="utf-8"))["frame"]
    click.echo(
        f"wrote {total} images ({classes} classes; {train} train + {test} test per class; {width}x{height} "
        f"px; seed {seed}; "
        + (f"family birds, preset {preset or 'medium'}" if family == "birds" else f"difficulty {difficulty}")
        + f") to {root / 'CUB_200_2011'}"
    )
    click.echo(f"metadata: {root / 'elope_synthetic.json'}")
    click.echo(f"use it with: --dataset synthetic --root {root}")


def _critter_writer(preset: str | None, difficulty: str, knobs: dict[str, Any]) -> Callable[..., Path]:
    """``write_synthetic`` with the difficulty and knobs; ``--preset`` names a bird preset only."""
    from elope.data.synthetic import write_synthetic

    if preset is not None:
        raise click.UsageError(
            "--preset names a preset of the bird family: add --family birds (the critters' presets are --difficulty)"
        )
    return lambda *args, **kw: write_synthetic(*args, **kw, difficulty=difficulty, **knobs)


def _bird_writer(difficulty: str, preset: str | None, knobs: dict[str, Any]) -> Callable[..., Path]:
    """``write_birds`` with the preset; of the critters' knobs only --object-scale and --aspect apply."""
    from elope.data.birds.writer import write_birds

    others = sorted(
        f"--{k.replace('_', '-')}"
        for k, v in knobs.items()
        if v is not None and k not in ("object_scale", "aspect")
    )
    if difficulty != "default" or others:
        named = ", ".join((["--difficulty"] if difficulty != "default" else []) + others)
        raise click.UsageError(
            f"{named}: the critters' option(s), not the birds'; with --family birds choose --preset "
            f"({', '.join(BIRD_PRESETS)}), --object-scale and --aspect"
        )
    scale, aspect = knobs.get("object_scale"), knobs.get("aspect")
    return lambda *args, **kw: write_birds(
        *args, **kw, preset=preset or "medium", object_scale=scale, aspect=aspect
    )


def _add_shard() -> None:
    """``elope data shard`` lives in its own module (:mod:`elope.commands.data_shard`)."""
    from elope.commands.data_shard import shard_command

    data.add_command(shard_command)


_add_shard()
