"""The crop decision (ours): crops or whole images, decided per run on training images held out of training.

The localization module's crop gives the backbone the object at a higher resolution (Sec. 5, Fig. 5), but a
box that keeps the body and cuts a crest or a tail also cuts the class evidence there, and then the crop
pipeline classifies worse than the same classifier on whole images. Nothing in the paper's recipe sees
that. With ``train.crop_decision: holdout`` the run checks it, on data no classifier of the run trained
on: after the last stage, the crop pipeline (what ``RUN/model`` holds) and the stage-1 classifier on whole
images (``RUN/teacher``: the same epochs from the same start, Table 5's control) classify the validation
split (``dataset.val_fraction`` of the training split, held out; never the test split). The crops are kept
unless the whole-image classifier answers *more* of those images correctly (a tie keeps the crops, the
method); otherwise ``RUN/model`` becomes the stage-1 classifier, which classifies the whole image, and the
crop pipeline is kept in ``RUN/crops``. The decision and both scores go to ``metrics.jsonl`` as one
``{"event": "crop_decision", ...}`` record and into ``model.json`` (``crop_decision``).
"""

from __future__ import annotations

from typing import Any

from elope.engine.plan import StagePlan
from elope.engine.run import Run
from elope.engine.validate import evaluate_split
from elope.runs.layout import run_paths
from elope.runs.model_folder import load_class_means, load_model

__all__ = ["DECISIONS", "applies", "decide_crops", "describe_decision"]

#: ``always``: the crops whatever they cost (the paper); ``holdout``: decided on the validation split.
DECISIONS = ("always", "holdout")


def applies(run: Run, stage: str) -> bool:
    """Whether the run decides after ``stage``: its last stage, a crop pipeline (the module trained in this
    run) and ``train.crop_decision: holdout``."""
    cfg = run.cfg
    return (
        cfg.train.crop_decision == "holdout"
        and stage == cfg.train.stages[-1]
        and run.localized
        and "crop" in run.completed
    )


def decide_crops(run: Run, plan: StagePlan) -> tuple[dict[str, Any], Any]:
    """Score the crop pipeline and the stage-1 classifier on the validation split (all processes together)
    and choose; returns the ``crop_decision`` record and the whole-image classifier with its class means
    (None, None where the crops stay)."""
    val_set = run.data.get("val", plan.input_size)  # the crop source, as the one-pass pipeline reads it
    teacher_dir = run_paths(run.out).teacher
    teacher, _ = load_model(teacher_dir, run.device, tau=run.model.spec.tau)
    crops = evaluate_split(run.model, val_set, plan, run.dist)
    whole = evaluate_split(teacher, val_set, plan, run.dist)
    keep = crops["top1"] >= whole["top1"]
    record: dict[str, Any] = {
        "event": "crop_decision",
        "stage": run.cfg.train.stages[-1],
        "choice": "crops" if keep else "whole",
        "images": len(val_set),
        "crops_top1": crops["top1"],
        "whole_top1": whole["top1"],
        "crops_loss": crops["loss"],
        "whole_loss": whole["loss"],
    }
    if keep:
        return record, None
    means = load_class_means(teacher_dir, len(run.classes))
    return record, (teacher, means)


def describe_decision(record: dict[str, Any]) -> str:
    """The ``crop_decision`` record in one line for the user."""
    n = record["images"]
    crops, whole = round(record["crops_top1"] * n), round(record["whole_top1"] * n)
    said = (
        f"[decision] on {n} held-out training images the crop pipeline answers {crops} correctly "
        f"({100 * record['crops_top1']:.1f} %), the stage-1 classifier on whole images {whole} "
        f"({100 * record['whole_top1']:.1f} %): "
    )
    if record["choice"] == "crops":
        return said + "RUN/model keeps the crops"
    return (
        said + "RUN/model classifies whole images (the stage-1 classifier); the crop pipeline is kept in "
        "RUN/crops"
    )
