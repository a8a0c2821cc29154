"""Batch prediction on Ray Data (issue 30) against the one-process loop of ``elope predict --model``, in one
run on the same photos and the same exported file.

* ``loop``: :func:`elope.tasks.predict.predict_paths` with ``model=FILE``, what ``elope predict --model``
  runs: each photo decoded and run alone, onnxruntime with its default threads (the model loaded in the
  timing, as for the others).
* ``folder``: ``elope predict --model FILE SOURCE --out FOLDER`` in this process
  (:func:`elope.tasks.predict_parts.predict_to_folder`): the same decoding, batches of ``--batch-size``;
  ``folder_1thread`` the same with onnxruntime on one thread, as each Ray actor runs it.
* ``ray_1``, ``ray_2``, ...: ``elope predict --model FILE --ray SOURCE --out FOLDER --actors N``
  (:func:`elope.tasks.ray_predict.predict_on_ray`) on a local Ray started once before (its start is
  reported apart): each actor one onnxruntime session with one thread, batches of ``--batch-size``.

Images/s are given as the whole call (``wall``: for Ray this includes starting the actors, which import
torch and load the file) and as the steady rate (``steady``: each contender also runs on one part's photos
first; the images beyond those over the seconds beyond that run: start-up drops out). Each contender runs
``--rounds`` times, the order reversed every other round, on one local Ray started first (idle while the
one-process contenders run); the medians are reported. Every run's
lines are checked to equal the loop's (paths, classes; scores within 1e-6). Without ``--model`` the tiny
random ELoPE of :mod:`benchmarks.serve` (resnet18, 96 px input) is exported first; the photos are
:func:`benchmarks.serve.photos` JPEGs of 320x240 to 800x600.

    python -m benchmarks.ray_predict --json docs/experiments/cpu/ray_predict.json
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import benchmark_main, environment
from benchmarks.serve import photos, tiny_model


def _arguments(parser: Any) -> None:
    parser.add_argument("--model", type=Path, help="an ONNX file of `elope export` (default: the tiny one)")
    parser.add_argument("--images", type=int, default=512, help="photos predicted by each contender")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts")
    parser.add_argument("--batch-size", type=int, default=16, help="images per model call (folder, Ray)")
    parser.add_argument("--part-size", type=int, default=32, help="images per part file")
    parser.add_argument("--rounds", type=int, default=2, help="each contender this often, order alternating")


def _write_photos(folder: Path, count: int) -> list[Path]:
    """``count`` JPEGs (16 distinct photos, repeated under their own names) in ``folder``."""
    made = photos(16)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:05d}.jpg"
        path.write_bytes(made[i % len(made)])
        paths.append(path)
    return paths


def _rates(images: int, seconds: float, small: int, small_seconds: float) -> dict[str, float]:
    """Images/s over the whole call and steady: the images beyond a run of ``small`` images over the time
    beyond it (what starting the actors and the first batches cost drops out)."""
    span = seconds - small_seconds
    return {
        "seconds": round(seconds, 3),
        "small_run_seconds": round(small_seconds, 3),
        "wall_images_per_s": images / seconds,
        "steady_images_per_s": (images - small) / span if span > 0 else float("nan"),
    }


def _same(lines: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Paths and classes equal, scores within 1e-6."""
    if [(x["path"], [c["index"] for c in x["classes"]]) for x in lines] != [
        (x["path"], [c["index"] for c in x["classes"]]) for x in expected
    ]:
        return False
    got = np.array([[c["score"] for c in x["classes"]] for x in lines])
    want = np.array([[c["score"] for c in x["classes"]] for x in expected])
    return bool(np.allclose(got, want, atol=1e-6))


def _folder(out: Path, files: list[Path], model: Path, part_size: int) -> Any:
    from elope.tasks.predict_parts import ResultsFolder, plan_parts

    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    return ResultsFolder(out, plan_parts(files, part_size), model_sha256=sha, top=5)


def _timed(work: Path, name: str, files: list[Path], model: Path, o: dict[str, Any], write: Any) -> float:
    """Seconds for ``write(folder)`` into a fresh results folder ``work/name``."""
    folder = _folder(work / name, files, model, o["part_size"])
    started = time.perf_counter()
    write(folder)
    return time.perf_counter() - started


def _contender(work: Path, name: str, files: list[Path], model: Path, o: dict[str, Any], write: Any) -> dict:
    """One contender on one part's photos, then on all (:func:`_rates`); its lines checked later."""
    small = files[: o["part_size"]]
    small_s = _timed(work, name + "_small", small, model, o, write)
    return _rates(len(files), _timed(work, name, files, model, o, write), len(small), small_s)


def _writers(model: Path, o: dict[str, Any], loop_items: list) -> dict[str, Any]:
    """Each contender as ``write(results_folder)``; the loop keeps its items in ``loop_items``."""
    from elope.deploy.runtime import ExportedModel
    from elope.tasks.predict import predict_paths
    from elope.tasks.predict_parts import predict_to_folder
    from elope.tasks.ray_predict import predict_on_ray

    def loop(folder: Any) -> None:
        files = [Path(path) for part in folder.parts for path in part.files]
        loop_items[:] = predict_paths(None, files, top=5, model=model)

    def one_process(threads: int | None) -> Any:
        load = lambda: ExportedModel(model, threads=threads)  # noqa: E731
        return lambda f: predict_to_folder(f, load, top=5, batch_size=o["batch_size"])

    writers = {"loop": loop, "folder": one_process(None), "folder_1thread": one_process(1)}
    for n in o["actors"]:
        writers[f"ray_{n}"] = lambda f, n=n: predict_on_ray(
            f, model, top=5, actors=n, batch_size=o["batch_size"]
        )
    return writers


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The median rates over the rounds, and every round."""
    return {
        "wall_images_per_s": float(np.median([r["wall_images_per_s"] for r in runs])),
        "steady_images_per_s": float(np.median([r["steady_images_per_s"] for r in runs])),
        "rounds": runs,
    }


def _contenders(work: Path, files: list[Path], model: Path, o: dict[str, Any]) -> dict[str, Any]:
    """Every contender ``rounds`` times, the order reversed every other round (the machine's load moves),
    on one local Ray started first; the lines of each checked against the loop's."""
    import ray

    from elope.tasks.predict_parts import read_lines

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    results: dict[str, Any] = {"ray_start_s": round(time.perf_counter() - started, 3)}
    loop_items: list = []
    writers = _writers(model, o, loop_items)
    runs: dict[str, list] = {name: [] for name in writers}
    try:
        for r in range(o["rounds"]):
            for name in list(writers)[:: 1 if r % 2 == 0 else -1]:
                runs[name].append(_contender(work, f"{name}_{r}", files, model, o, writers[name]))
    finally:
        ray.shutdown()
    for name, contender_runs in runs.items():
        results[name] = _summary(contender_runs)
        if name != "loop":
            results[name]["same_as_loop"] = _same(read_lines(work / f"{name}_0"), loop_items)
    return results


def run(**o: Any) -> dict[str, Any]:
    """Every contender on ``o["images"]`` photos; the result dict of the JSON file."""
    with tempfile.TemporaryDirectory(prefix="elope-ray-bench-") as tmp:
        work = Path(tmp)
        model = o["model"] or tiny_model(work / "tiny.onnx")
        (work / "photos").mkdir()
        files = _write_photos(work / "photos", o["images"])
        results = _contenders(work, files, model, o)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in o.items()}
    import onnxruntime
    import ray

    versions = {"onnxruntime": onnxruntime.__version__, "ray": ray.__version__}
    return {
        "benchmark": "ray_predict",
        "options": options,
        "environment": {**environment(), **versions},
        **results,
    }


def report(result: dict[str, Any]) -> str:
    """The table of docs/results.md (medians over the rounds)."""
    o = result["options"]
    lines = [
        f"{o['images']} photos, {o['rounds']} rounds; Ray started in {result['ray_start_s']} s (not counted)"
    ]
    lines.append(f"{'contender':<15} {'images/s':>9} {'steady/s':>9} {'x loop':>7}  same")
    loop = result["loop"]["wall_images_per_s"]
    for name in ["loop", "folder", "folder_1thread", *(f"ray_{a}" for a in o["actors"])]:
        r = result[name]
        lines.append(
            f"{name:<15} {r['wall_images_per_s']:>9.1f} {r['steady_images_per_s']:>9.1f} "
            f"{r['wall_images_per_s'] / loop:>7.2f}  {r.get('same_as_loop', '-')}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; prints the report and returns the result dict."""
    return benchmark_main(argv, __doc__ or "", _arguments, run, report, threads=None)


if __name__ == "__main__":
    main()
