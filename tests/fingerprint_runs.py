"""``python tests/fingerprint_runs.py WORKDIR``: train tiny four-stage runs and print the SHA-256 of what
they produced (weights, class means, the stage-1 teacher, evaluate's metrics and predictions).

A refactoring that must not change outputs is checked by running this at the commit before and after it
and comparing the two listings line by line (issue 20: "a four-stage run gives byte-identical weights").
The recipes cover both crop paths (the crop source from the original, ``dataset.crop_source`` set; the
resized image, ``null``), τ fixed and chosen at the end of stage 2, both box rules, the heatmap upsampling,
every loss variant, and a fresh crop stage. Runs one thread per process; about a minute per recipe on a
loaded 2-core machine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from train_helpers import run_cli, tiny_args, write_tiny_synthetic

RECIPES: dict[str, tuple[str, ...]] = {
    "tiny": (),
    "source-auto-peak": (
        "--set", "dataset.crop_source=96", "--set", "model.tau_select=auto", "--set", "model.box_rule=peak",
        "--set", "model.heatmap_upsample=true", "--set", "stages.crop.init=fresh",
        "--set", "loss.localizer_target=standardized",
    ),
    "within-labels": ("--set", "loss.variant=within", "--set", "model.tau_select=labels"),
    "center": ("--set", "loss.variant=center", "--set", "dataset.crop_source=80"),
    "dff": ("--set", "loss.variant=dff", "--set", "loss.renormalize_means=true"),
}  # fmt: skip

FILES = ("model/model.safetensors", "model/class_means.safetensors", "teacher/model.safetensors")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "absent"


def fingerprint(work: Path, name: str, extra: tuple[str, ...], root: Path) -> list[str]:
    run = work / name
    done = run_cli(tiny_args(root, run, *extra, epochs=1))
    if done.returncode != 0:
        raise SystemExit(f"{name}: train failed\n{done.stderr[-3000:]}")
    lines = [f"{name} {file} {digest(run / file)}" for file in FILES]
    out = work / f"{name}.eval.json"
    predictions = work / f"{name}.predictions.jsonl"
    done = run_cli(
        ["evaluate", "--run", str(run), "--json", str(out), "--predictions", str(predictions), "--mean-map"]
    )
    if done.returncode != 0:
        raise SystemExit(f"{name}: evaluate failed\n{done.stderr[-3000:]}")
    metrics = json.loads(out.read_text())
    for key in ("root", "run"):  # absolute paths differ between work folders
        metrics.pop(key, None)
    keep = {k: v for k, v in metrics.items() if "second" not in k and "time" not in k}
    text = json.dumps(keep, sort_keys=True).encode()
    lines.append(f"{name} evaluate.json {hashlib.sha256(text).hexdigest()[:16]}")
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    for row in rows:  # absolute paths differ between work folders
        row["path"] = Path(row["path"]).name
    text = json.dumps(rows, sort_keys=True).encode()
    lines.append(f"{name} predictions.jsonl {hashlib.sha256(text).hexdigest()[:16]}")
    return lines


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    root = write_tiny_synthetic(work / "data")
    names = sys.argv[2:] or list(RECIPES)
    for name in names:
        for line in fingerprint(work, name, RECIPES[name], root):
            print(line, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
