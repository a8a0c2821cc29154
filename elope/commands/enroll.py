"""``elope enroll``: add classes from a few images to a copy of a model (:mod:`elope.tasks.enroll`)."""

from __future__ import annotations

from pathlib import Path

import click

from elope.commands.options import checked_output, output_rules, run_option, user_errors
from elope.runs.layout import read_by_run


def _class_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--class``: a name that prints (:func:`elope.data.names.class_name_problem`)."""
    from elope.data.names import class_name_problem

    if value is not None and (problem := class_name_problem(value)) is not None:
        raise click.BadParameter(f"the class name {problem}: give a name with visible characters only")
    return value


def _classes_from(folder: Path) -> dict[str, list[Path]]:
    """``folder/<class>/<images>``: one class per sub-folder (sorted)."""
    classes = {d.name: [d] for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    if not classes:
        raise click.UsageError(f"--classes-from {folder}: no sub-folders (one per class) found")
    return classes


@click.command("enroll", short_help="Add a class from a few images, without retraining.")
@run_option()
@click.option(
    "--class",
    "name",
    default=None,
    callback=_class_name,
    help="Name of the new class (its images are IMAGE_OR_DIR...): visible characters, no control characters.",
)
@click.argument("images", nargs=-1, metavar="[IMAGE_OR_DIR...]", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--classes-from",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Instead of --class: a folder with one sub-folder of images per new class.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New folder for the model copy.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda.")
def enroll_command(
    run_dir: Path,
    name: str | None,
    images: tuple[Path, ...],
    classes_from: Path | None,
    out: Path,
    device: str,
) -> None:
    """Add a class computed from a few images (its class mean) to a copy of the model in OUT/model; the
    run is not touched. `elope predict --run OUT` then answers with the nearest class mean over the old
    and new classes.

    Example: elope enroll --run runs/cub --class "Ivory Gull" gull1.jpg gull2.jpg --out runs/cub+gull
    """
    from elope.tasks.enroll import enroll_classes

    if (name is None) == (classes_from is None):
        raise click.UsageError("pass either --class NAME IMAGE... or --classes-from FOLDER")
    if name is not None and not images:
        raise click.UsageError(f"--class {name}: pass its image files or folders")
    if classes_from is not None and images:
        raise click.UsageError("--classes-from takes no IMAGE arguments")
    output_rules(
        "elope enroll", read=[*images, classes_from, *read_by_run(run_dir, dataset=False)], own=[out]
    )
    checked_output(out, "--out", kind="dir")
    new = {name: list(images)} if name is not None else _classes_from(classes_from)
    with user_errors():
        try:
            folder = enroll_classes(run_dir, out, new, device=device)
        except (FileNotFoundError, ValueError) as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"enrolled {', '.join(new)} into {folder} (predict with --run {out})", err=True)
