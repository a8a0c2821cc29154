"""``elope profile``: MACs and parameters of the baseline and of ELoPE (Table 3, :mod:`elope.tasks.profile`)."""

from __future__ import annotations

import json

import click

from elope.spec import spec_default
from elope.tasks.profile_limits import MAX_IMAGE_SIZE


def _format_table(result: dict[str, dict[str, int]], backbone: str, image_size: int) -> str:
    lines = [f"{'model':<14}{'MACs':>14}{'params':>14}", "-" * 42]
    for name, row in result.items():
        lines.append(f"{name:<14}{row['macs']:>14.4e}{row['params']:>14,}")
    if "baseline" in result:
        base = result["baseline"]
        lines.append("")
        lines.append(
            f"ELoPE / baseline: MACs x{result['elope']['macs'] / base['macs']:.4f}, "
            f"params x{result['elope']['params'] / base['params']:.4f}"
        )
    if backbone == "resnet50" and image_size == 448:
        lines.append(
            "paper (Table 3, 200 classes): baseline 1.648e10 MACs / 24M params, ELoPE 1.654e10 / 25M; "
            "localization module ~220k params (Sec. 5)"
        )
    return "\n".join(lines)


@click.command("profile", short_help="MACs and parameters (Table 3).")
@click.option("--backbone", default="resnet50", show_default=True, help="resnet18/34/50/101 or a timm name.")
@click.option(
    "--num-classes",
    default=200,
    show_default=True,
    type=click.IntRange(1, 50_000),
    help="Classifier outputs.",
)
@click.option(
    "--image-size",
    default=spec_default("image_size"),
    show_default=True,
    type=click.IntRange(1, MAX_IMAGE_SIZE),
    help=f"Input side (MACs grow with its square: for a larger side, scale the {MAX_IMAGE_SIZE} figure).",
)
@click.option(
    "--embedding-dim",
    default=512,
    show_default=True,
    type=click.IntRange(0, 65_536),
    help="Embedding width (0: the classifier on the pooled features).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def profile_command(
    backbone: str, num_classes: int, image_size: int, embedding_dim: int, as_json: bool
) -> None:
    """MACs and parameters of the baseline and of ELoPE (the paper's Table 3)."""
    from elope.tasks.profile import profile_models  # torch: imported here, not for --help

    try:
        result = profile_models(backbone, num_classes, image_size, embedding_dim)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(_format_table(result, backbone, image_size))
