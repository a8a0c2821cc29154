"""``elope evaluate``: the metrics of a trained run on a split (:func:`elope.tasks.evaluate.evaluate_run`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from elope import writer
from elope.commands import evaluate_extra as extra
from elope.commands.options import (
    BATCH_RANGE,
    checked_output,
    compile_option,
    force_option,
    model_file_option,
    output_rules,
    renamed_option,
    run_option,
    tau_option,
    unfinished_option,
)
from elope.config import DATASETS
from elope.data.errors import DataError
from elope.data.splits import SPLITS
from elope.failures import TrainingError, one_line
from elope.nn.tta_views import TTA_VIEWS
from elope.runs.layout import read_by_run
from elope.runs.lock import writers_lock


def _pct(value: float | None) -> str:
    return f"{'n/a':>8}" if value is None else f"{100.0 * value:6.2f} %"


def trained_on_warning(result: dict[str, Any]) -> str | None:
    """What ``evaluate`` says when the split holds images the model trained on (``trained_on_split``)."""
    if not result.get("trained_on_split"):
        return None
    return (
        f"warning: the {result['split']} split holds images this run was trained on: its scores measure how "
        "well the model fits its training data, not how it does on new images (evaluate --split test)"
    )


def format_report(result: dict[str, Any], worst: int = 5) -> str:
    """The human-readable table printed by ``elope evaluate``."""
    trained = " (images the model was trained on)" if result.get("trained_on_split") else ""
    lines = [
        f"{result.get('dataset')}/{result['split']}{trained}: {result['num_images']} images, "
        f"tau {result.get('tau')}",
        f"  top-1 accuracy (softmax)          {_pct(result['top1'])}",
        f"  mean per-class accuracy           {_pct(result['mean_per_class'])}",
        f"  nearest-class-mean top-1          {_pct(result['ncm_top1'])}",
        f"  localization IoU>=0.5 (module)    {_pct(result['loc_iou50'])}",
        f"  localization IoU>=0.5 (mean map)  {_pct(result['mean_map_iou50'])}",
    ]
    lines += field_lines(result.get("localization"))
    lines += tta_lines(result.get("tta"))
    ranked = sorted(((a, c) for c, a in result["per_class"].items() if a is not None), key=lambda t: t[0])
    if ranked:
        lines.append(f"lowest per-class accuracy ({min(worst, len(ranked))} of {len(ranked)}):")
        lines += [f"  {_pct(a)}  {c}" for a, c in ranked[:worst]]
    if result["confused_pairs"]:
        lines.append("most confused (true -> predicted: count):")
        lines += [f"  {p['true']} -> {p['predicted']}: {p['count']}" for p in result["confused_pairs"]]
    if result.get("skipped"):
        lines.append(f"skipped {len(result['skipped'])} unreadable image(s):")
        lines += [f"  {s['path']}: {s['error']}" for s in result["skipped"]]
    return "\n".join(lines)


def field_lines(block: dict[str, Any] | None) -> list[str]:
    """The localization metrics of the field (``localization``), one line per box source measured."""
    lines = []
    for name, label in (("module", "module"), ("mean_map", "mean map")):
        m = (block or {}).get(name)
        if not m:
            continue
        v2 = m["maxboxacc_v2"]
        tail = (
            ""
            if v2 is None
            else f", MaxBoxAccV2 {_pct(v2['value']).strip()} (tau on {v2['selection_split']})"
        )
        lines.append(
            f"  {'localization (' + label + ')':<34}GT-known {_pct(m['gt_known']).strip()}, "
            f"top-1 loc {_pct(m['top1_loc']).strip()}{tail}"
        )
    return lines


def tta_lines(tta: dict[str, Any] | None) -> list[str]:
    """The accuracies with test-time augmentation (``--tta``), printed under the single-view ones."""
    if not tta:
        return []
    labels = ("top-1 accuracy", "mean per-class accuracy", "nearest-class-mean")
    values = (tta["top1"], tta["mean_per_class"], tta["ncm_top1"])
    return [f"  {label + ' (' + tta['views'] + ' TTA)':<34}{_pct(v)}" for label, v in zip(labels, values)]


def _warn(result: dict[str, Any]) -> None:
    """On stderr: an unfinished run, a split the model trained on, the first ten ground-truth boxes outside
    their image (and how many more)."""
    for warning in (result.get("unfinished"), trained_on_warning(result)):
        if warning:
            click.echo(warning, err=True)
    problems = result.get("box_problems", [])
    for problem in problems[:10]:
        click.echo(f"warning: {problem['path']}: {problem['problem']}", err=True)
    if len(problems) > 10:
        click.echo(f"warning: {len(problems) - 10} more box problem(s) (box_problems)", err=True)


def _emit(result: dict[str, Any], json_out: str | None) -> None:
    """Print the report, or with ``--json -`` the JSON alone; ``--json FILE`` also writes it there."""
    if json_out == "-":
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(format_report(result))
    if json_out:
        path = writer.write_text(json_out, json.dumps(result, indent=2) + "\n")
        click.echo(f"metrics written to {path}", err=True)


def _outputs(
    run_dir: Path, split: str, json_out: str | None, examples: int, predictions: Path | None
) -> list[Path]:
    """Every file the command will write, checked before the work (one message shape)."""
    paths = [
        checked_output(None if json_out == "-" else json_out, "--json"),
        checked_output(predictions, "--predictions"),
        checked_output(run_dir / f"examples_{split}.png", "--examples") if examples else None,
    ]
    if json_out and predictions and Path(json_out).resolve() == Path(predictions).resolve():
        raise click.ClickException(f"--json and --predictions both name {predictions}: give two files")
    return [p for p in paths if p is not None]


def _draw_examples(run_dir: Path, split: str, examples: int, device: str, tau: float | None) -> None:
    """``--examples N``: the localization example sheet, ``RUN/examples_<split>.png``."""
    from elope.tasks.examples import localization_examples

    sheet = localization_examples(
        run_dir, run_dir / f"examples_{split}.png", examples, split=split, device=device, tau=tau
    )
    click.echo(f"examples drawn to {sheet}", err=True)


@dataclass(frozen=True)
class EvaluateOptions:
    """The options of ``elope evaluate`` as click parses them (one field per option, named by its ``dest``)."""

    run_dir: Path | None
    model_file: Path | None
    report_dir: Path | None
    retrieval: bool
    dataset: str | None
    root: Path | None
    split: str
    batch_size: int
    device: str
    num_workers: int
    tau: float | None
    skip_unreadable: bool
    json_out: str | None
    examples: int
    mean_map: bool
    predictions: Path | None
    compile_mode: str | None
    allow_unfinished: bool
    tta: str | None
    maxboxacc: bool
    force: bool


@click.command("evaluate", short_help="Accuracy and localization of a run on a split.")
@run_option(required=False)
@model_file_option(
    "Instead of --run: a file written by `elope export` (with --dataset and --root): top-1, top-5, "
    "per-class metrics and --report."
)
@click.option(
    "--report",
    "report_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Also write DIR/report.html (self-contained), metrics.json, per_class.csv, confusion.csv/.png "
    "and predictions.jsonl (elope/tasks/report.py).",
)
@click.option(
    "--retrieval",
    is_flag=True,
    help="Also report Recall@1/2/4/8 and MAP@R of the embedding (a run trained with "
    "dataset.options.zero_shot=seen: on the unseen classes).",
)
@click.option(
    "--dataset",
    default=None,
    help=f"Dataset name ({', '.join(DATASETS)}). Default: the run's.",
)
@click.option(
    "--root", default=None, type=click.Path(path_type=Path), help="Dataset root. Default: the run's."
)
@click.option(
    "--split", default="test", show_default=True, type=click.Choice(SPLITS), help="Split to evaluate."
)
@click.option("--batch-size", default=16, show_default=True, type=BATCH_RANGE, help="Images per batch.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda, cuda:1.")
@renamed_option(
    "--num-workers",
    "--workers",  # the name in elope 0.1.0: a hidden alias
    dest="num_workers",
    default=0,
    show_default=True,
    type=click.IntRange(0, 256),
    help="DataLoader worker processes.",
)
@tau_option("Box threshold τ. Default: the run's.")
@click.option(
    "--skip-unreadable", is_flag=True, help="Leave unreadable images out (listed) instead of failing."
)
@click.option(
    "--json",
    "json_out",
    default=None,
    metavar="FILE|-",
    help="Also write the metrics as JSON ('-': stdout only).",
)
@click.option(
    "--examples",
    default=0,
    show_default=True,
    type=click.IntRange(0, 256),
    help="Also draw N images with their mean-feature-map and localization-module boxes (Figs. 2, 4, 6) "
    "to RUN/examples_<split>.png.",
)
@click.option(
    "--mean-map",
    is_flag=True,
    help="Also measure Table 4's baseline: boxes from the stage-1 classifier's mean feature map "
    "(RUN/teacher; one more backbone pass per image).",
)
@click.option(
    "--predictions",
    default=None,
    type=click.Path(path_type=Path),
    help="Write one JSON line per image (path, true class, top-5, predicted and ground-truth box in "
    "original-image pixels) to this file.",
)
@compile_option(
    "Run the one-pass pipeline through torch.compile (optionally: the mode; reduce-overhead = CUDA graphs)."
)
@click.option(
    "--tta",
    default=None,
    type=click.Choice(TTA_VIEWS),
    help="Also report the accuracies with test-time augmentation, beside the single-view ones: the softmax "
    "averaged over views of the crop (flip: the crop and its mirror). Default: none.",
)
@click.option(
    "--maxboxacc/--no-maxboxacc",
    default=True,
    show_default=True,
    help="Report MaxBoxAccV2 (Choe et al., CVPR 2020) where the split has boxes; its heatmap thresholds are "
    "chosen on the run's validation or training split (one more pass over it, the localization module "
    "only; with --mean-map also the teacher), never on the evaluated split.",
)
@unfinished_option()
@force_option()
def evaluate_command(**given: Any) -> None:
    """Evaluate a trained run: top-1, per-class and nearest-class-mean accuracy, localization (Table 4).

    Example: elope evaluate --run runs/cub --json metrics.json --report report/
    """
    from elope.tasks.evaluate import UnreadableImageError, evaluate_run  # torch: not for --help

    o = EvaluateOptions(**given)
    run_dir, split, device, tau = o.run_dir, o.split, o.device, o.tau
    output_rules("elope evaluate", inputs=[o.model_file], read=read_by_run(run_dir, o.root), force=o.force)
    predictions = extra.report_predictions(
        run_dir, o.model_file, o.report_dir, o.predictions, o.retrieval, o.tta
    )
    if o.model_file is not None:  # an exported file: top-1, top-5, per class, --report
        return extra.evaluate_model_file(
            o.model_file, o.dataset, o.root, split, o.report_dir, o.json_out, device, o.batch_size
        )
    outputs = _outputs(run_dir, split, o.json_out, o.examples, predictions)
    try:
        with writers_lock(outputs, "elope evaluate"):
            result = evaluate_run(
                run_dir, o.dataset, o.root, split, device, tau=tau, batch_size=o.batch_size,
                skip_unreadable=o.skip_unreadable, num_workers=o.num_workers, mean_map=o.mean_map,
                predictions=predictions, compile_mode=o.compile_mode, allow_unfinished=o.allow_unfinished,
                tta=o.tta, maxboxacc=o.maxboxacc,
            )  # fmt: skip
            extra.add_report_and_retrieval(
                result, run_dir, o.report_dir, o.retrieval, device, tau, o.batch_size
            )
            _warn(result)
            _emit(result, o.json_out)  # the metrics first: a picture that fails to draw cannot lose them
            if o.examples:
                _draw_examples(run_dir, split, o.examples, device, tau)
    except (FileNotFoundError, ValueError, DataError, UnreadableImageError, TrainingError) as e:
        raise click.ClickException(one_line(e)) from e  # without a DataLoader worker's traceback
