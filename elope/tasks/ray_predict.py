"""``elope predict --model FILE --ray [ADDRESS] SOURCE --out FOLDER``: the parts of a results folder
(:mod:`elope.tasks.predict_parts`) computed by Ray Data, on a local Ray the command starts or on a cluster.

The image paths of the parts still to write go into a Ray dataset; ``map_batches`` hands ``batch_size`` of
them at a time to a pool of ``actors`` actors, each holding one onnxruntime session of the exported file
(:class:`elope.deploy.runtime.ExportedModel`, ``threads`` intra-op threads, on ``cpus_per_actor`` of Ray's
CPUs). An actor decodes its images exactly as ``elope predict`` does
(:func:`elope.tasks.predict.decode_source`: the same :func:`elope.data.io.decode_image`, the same eval
transform) and runs them as one batch (:func:`elope.tasks.predict.predict_batch`): the lines are those of
``elope predict --model`` and of the one-process ``--out`` (``tests/test_ray.py``). The driver
gathers the answers by part and writes each part, whole and atomically, as soon as its last image is in: an
interrupted run leaves finished parts that the next one skips. An image of a shard set (``elope data
shard``) travels as its place (shard, byte offset, size): the actor reads its bytes from the shard itself.

On a cluster (``ADDRESS`` ``auto`` or ``ray://host:port``) every node reads the image paths and the model
file (and the shards) itself: they must lie on storage all nodes see at the same paths, and elope with its ``ray`` extra must
be installed there. Ray is imported only here (``pip install "elope[ray]"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from elope.data.shard_store import shown
from elope.tasks.predict_parts import Part, ResultsFolder

__all__ = ["LOCAL", "RayPredictor", "predict_on_ray", "ray_session", "require_ray"]

LOCAL = "local"  # `--ray` without an address: a Ray started by the command on this machine
INSTALL = 'pip install "elope[ray]"'


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # pyarrow, pandas: the data extra of ray
    except ImportError as e:
        raise ImportError(f"--ray needs Ray with Ray Data ({e}): install the extra, `{INSTALL}`") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray connected for the block: a Ray already running in this process is used as it is; ``None`` or
    ``local`` starts a local one (``num_cpus`` logical CPUs, no dashboard) and stops it after; any other
    address (``auto``, ``ray://host:port``, ``host:port``) joins that cluster and leaves it after."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address in (None, LOCAL):
        ray.init(address=LOCAL, num_cpus=num_cpus, **options)  # a new one: never another's Ray found here
    else:
        ray.init(address=address, **options)
    try:
        yield ray
    finally:
        ray.shutdown()


class RayPredictor:
    """The actor of the pool: one onnxruntime session of the exported file; ``__call__``: a batch of paths
    (a Ray Data batch ``{"path", "file", "part", "where"}``: as given, absolute, the part, and for an image
    of a shard set the JSON of its ``[root, shard, offset, size, member]``, else ``""``) -> their lines
    ``{"part", "line"}`` (the JSON of each item). An image of a shard set is read by the actor from its
    shard, by byte range (:func:`elope.tasks.predict_parts.shard_reader`: one open set per actor)."""

    def __init__(self, model: str, top: int, threads: int | None) -> None:
        from elope.deploy.runtime import ExportedModel

        self.run = ExportedModel(model, "cpu", threads)
        self.top = top
        self.stores: dict[str, Any] = {}  # the ShardStore of each shard set read

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from elope.tasks.predict_parts import predict_part

        files = tuple(str(p) for p in batch["file"])  # absolute: a worker's folder is not the driver's
        shards = {}
        for file, where in zip(files, batch["where"]):
            if where:
                root, *location = json.loads(str(where))
                shards[file] = (root, tuple(location))
        items = predict_part(self.run, files, self.top, len(files) or 1, shards, self.stores)
        for item, path in zip(items, batch["path"]):
            item["path"] = str(path)  # as the command was given it, as `elope predict` prints it
        lines = [json.dumps(item, ensure_ascii=False) for item in items]
        return {"part": np.asarray(batch["part"]), "line": np.asarray(lines, dtype=object)}


def _quiet(ray: Any) -> None:
    """Ray Data's own progress bars and INFO lines off (the command shows one tqdm bar)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _where(path: str, shards: dict[str, Any]) -> str:
    """An image's place in its shard set as the actor reads it (``""`` for a file): the JSON of
    ``[root, shard, offset, size, member]``, a local root made absolute."""
    if path not in shards:
        return ""
    root, location = shards[path]
    root = str(root) if "://" in str(root) else os.path.abspath(root)
    return json.dumps([root, *location])


def _dataset(
    ray: Any, parts: list[Part], model: str, top: int, options: dict[str, Any], shards: dict[str, Any]
) -> Any:
    """The pending images through the actor pool, as a Ray dataset of ``{"part", "line"}``."""
    rows = [
        {"path": path, "file": os.path.abspath(path), "part": part.index, "where": _where(path, shards)}
        for part in parts
        for path in part.files
    ]
    blocks = max(1, min(len(rows), options["actors"] * 4))
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        RayPredictor,
        fn_constructor_args=(model, top, options["threads"]),
        batch_size=options["batch_size"],
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options["actors"]),
        num_cpus=options["cpus_per_actor"],
    )


def predict_on_ray(
    folder: ResultsFolder,
    model: str | Path,
    *,
    top: int,
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 16,
    threads: int | None = 1,
    progress: bool = False,
    shards: dict[Path, Any] | None = None,
) -> int:
    """Write the parts of ``folder`` not yet written with Ray Data (see the module's notes); returns how
    many parts were written. ``threads``: onnxruntime's intra-op threads per actor (each actor takes that
    many of Ray's CPUs); a local Ray gets at least ``actors × threads`` logical CPUs. ``shards``: where the
    images of shard sets lie (:func:`elope.tasks.predict_parts.find_sources`)."""
    if actors < 1 or batch_size < 1 or (threads is not None and threads < 1):
        raise ValueError(
            f"actors, batch_size and threads must be >= 1, got {actors}, {batch_size}, {threads}"
        )
    pending = folder.open()
    if not pending:
        return 0
    cpus = threads or 1
    local_cpus = max(os.cpu_count() or 1, actors * cpus)
    options = {"actors": actors, "batch_size": batch_size, "threads": threads, "cpus_per_actor": cpus}
    by_index = {part.index: part for part in pending}
    lines: dict[int, list[dict[str, Any]]] = {part.index: [] for part in pending}
    written = 0
    with ray_session(address, num_cpus=local_cpus) as ray:
        _quiet(ray)
        located = {shown(path): where for path, where in (shards or {}).items()}
        dataset = _dataset(ray, pending, str(Path(model).resolve()), top, options, located)
        total = sum(len(part.files) for part in pending)
        with tqdm(total=total, desc="predict (ray)", unit="image", disable=not progress) as bar:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for index, line in zip(batch["part"], batch["line"]):
                    lines[int(index)].append(json.loads(line))
                bar.update(len(batch["line"]))
                for index in [i for i, got in lines.items() if len(got) == len(by_index[i].files)]:
                    folder.write(by_index[index], _in_order(by_index[index], lines.pop(index)))
                    written += 1
    return written


def _in_order(part: Part, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items of one part in the order of its files (Ray returns them in any order)."""
    slots: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        slots.setdefault(item["path"], []).append(item)
    return [slots[path].pop() for path in part.files]
