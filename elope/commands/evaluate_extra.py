"""What ``elope evaluate --report / --retrieval / --model`` adds to the metrics (kept out of
:mod:`elope.commands.evaluate`, which stays the metrics of a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from elope import writer
from elope.commands.options import checked_output
from elope.failures import one_line
from elope.outputs import OutputPathError

#: The files ``--report DIR`` writes (``elope/tasks/report.py``).
REPORT_FILES = (
    "report.html",
    "metrics.json",
    "per_class.csv",
    "confusion.csv",
    "confusion.png",
    "predictions.jsonl",
)


def report_predictions(
    run_dir: Path | None,
    model_file: Path | None,
    report_dir: Path | None,
    predictions: Path | None,
    retrieval: bool = False,
    tta: str | None = None,
) -> Path | None:
    """Check ``--run`` / ``--model`` (one of them; ``--retrieval`` and ``--tta`` need a run) and ``--report
    DIR``; the predictions file to write (``DIR/predictions.jsonl`` unless ``--predictions`` names one)."""
    if (run_dir is None) == (model_file is None):
        raise click.UsageError("pass either --run RUN or --model FILE (from `elope export`).")
    if model_file is not None:
        refuse_tta_for_a_file(tta)
    if retrieval and model_file is not None:
        raise click.UsageError(
            "--retrieval needs the embedding: pass --run RUN (an exported graph gives scores)."
        )
    if report_dir is None:
        return predictions
    checked_output(report_dir, "--report", kind="dir")
    try:  # a file of the user's where the report writes one: refused now, not after the work
        for name in REPORT_FILES[:-1] if predictions else REPORT_FILES:
            writer.refusal(report_dir / name, "--report")
    except OutputPathError as error:
        raise click.ClickException(str(error)) from None
    return predictions or report_dir / "predictions.jsonl"


def add_report_and_retrieval(
    result: dict[str, Any],
    run_dir: Path,
    report_dir: Path | None,
    retrieval: bool,
    device: str,
    tau: float | None,
    batch_size: int,
) -> None:
    """``result["retrieval"]`` (:func:`elope.tasks.embed.retrieval_run`) and the report of
    :mod:`elope.tasks.report` from the predictions ``evaluate_run`` wrote to ``report_dir`` (each when
    asked for)."""
    if retrieval:
        from elope.tasks.embed import retrieval_run

        result["retrieval"] = retrieval_run(
            run_dir, result["split"], result["dataset"], result["root"], batch_size=batch_size, device=device
        )
        r = result["retrieval"]
        ranks = ", ".join(f"R@{k} {100 * r[f'recall@{k}']:.1f}" for k in (1, 2, 4, 8))
        click.echo(
            f"retrieval ({r['classes']} classes, {r['num_queries']} images): {ranks}, MAP@R {100 * r['map@r']:.1f}",
            err=True,
        )
    if report_dir is not None:
        from elope.runs.loaded import load_run
        from elope.tasks.report import write_report

        page = write_report(
            report_dir, list(result["per_class"]), load_run(run_dir, device, tau=tau), extra=result
        )
        click.echo(f"report written to {page}", err=True)


def refuse_tta_for_a_file(tta: str | None) -> None:
    """``--tta`` with ``--model``: an exported file's views are fixed in its graph (``elope export --tta``)."""
    if tta is not None:
        raise click.UsageError(
            f"--tta {tta} evaluates a run folder (--run): an exported file carries its views in the graph; "
            f"export it with `elope export --tta {tta}` and evaluate that file without --tta."
        )


def evaluate_model_file(
    model_file: Path,
    dataset: str | None,
    root: Path | None,
    split: str,
    report_dir: Path | None,
    json_out: str | None,
    device: str,
    batch_size: int,
) -> None:
    """``evaluate --model FILE``: top-1, top-5, mean per-class accuracy of an exported graph on a split
    (``--dataset``/``--root`` required), printed or as JSON, and ``--report``."""
    from elope.deploy.runtime import ExportedModel
    from elope.tasks.report import PREDICTIONS_FILE, evaluate_exported, write_report

    if not dataset or not root:
        raise click.UsageError("--model needs --dataset and --root (an exported file records no dataset).")
    checked_output(None if json_out == "-" else json_out, "--json")
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as scratch:
            lines = (report_dir or Path(scratch)) / PREDICTIONS_FILE
            result = evaluate_exported(
                model_file, dataset, root, split, lines, device=device, batch_size=batch_size
            )
            if report_dir is not None:
                model = ExportedModel(model_file, device)
                page = write_report(report_dir, model.classes, model, extra=result)
                click.echo(f"report written to {page}", err=True)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise click.ClickException(one_line(error)) from None
    text = json.dumps(result, indent=2)
    if json_out and json_out != "-":
        writer.write_text(json_out, text + "\n")
    click.echo(
        text if json_out == "-" else f"top-1 {100 * result['top1']:.2f} %, top-5 {100 * result['top5']:.2f} %"
    )
