"""``elope predict --out FOLDER``: the answers as JSON lines, one per image, in part files that a run
interrupted and started again does not write twice.

The images (folders searched as ``elope predict`` searches them, image files, *list files*: ``.txt`` or
``.lst``, one image path a line, relative to the list's folder, blank lines and ``#`` comments left out; and
shard sets of ``elope data shard``, a folder, one ``.tar`` or their URL, whose images are named
``SHARD/MEMBER`` and read by byte range) are split, in their order, into parts of ``part_size`` images.
Each part is written whole, atomically (:func:`elope.writer.write_text`) as ``part-00000.jsonl``, ...: one
line per image, the item of ``elope predict --json`` (``path``, ``classes``, ``box``, ``size``; or ``path``,
``error``), in the order of the part's files. ``plan.json`` records what the folder answers (the model's sha256, ``top``, the part size
and every image path); a second run with the same plan skips the parts already written (resumable), one
with another plan is refused. The parts are computed in this process (:func:`predict_to_folder`) or by
Ray Data (:mod:`elope.tasks.ray_predict`): the same lines either way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from elope import writer
from elope.data.files import Skipped
from elope.data.shard_store import ShardStore, shown
from elope.data.shards import read_from_set
from elope.evaluation.predictor import Predictor
from elope.tasks.predict import decode_source, find_images, predict_batch

__all__ = [
    "LIST_SUFFIXES",
    "PLAN_NAME",
    "Part",
    "ResultsFolder",
    "find_sources",
    "plan_parts",
    "predict_part",
    "predict_to_folder",
    "read_lines",
    "shard_reader",
]

PLAN_NAME = "plan.json"
LIST_SUFFIXES = (".txt", ".lst")  # a file with one of these names lists images, one path a line


@dataclass(frozen=True)
class Part:
    """``index`` and the image paths of one part file."""

    index: int
    files: tuple[str, ...]

    @property
    def name(self) -> str:
        """``part-00007.jsonl``."""
        return f"part-{self.index:05d}.jsonl"


def _listed(list_file: Path) -> list[Path]:
    """The image paths of a list file, relative ones taken from the list's folder."""
    paths = []
    for raw in list_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            path = Path(line)
            paths.append(path if path.is_absolute() else list_file.parent / path)
    return paths


def find_sources(
    sources: Iterable[str | Path], shards: dict[Path, Any] | None = None
) -> tuple[list[Path], list[Skipped]]:
    """The image files of ``sources`` (folders, image files, list files, shard sets), in order, and the
    skipped files of the folders (:func:`elope.tasks.predict.find_images`). A listed path that does not
    exist is taken (it gives its line an ``error``), as a file named on the command line is. A shard set's
    folder or ``.tar`` shard gives its images as ``SHARD/MEMBER``; ``shards`` receives where each lies
    (``(root, location)``: :func:`shard_reader`)."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    for source in map(Path, sources):
        if source.is_file() and source.suffix.lower() in LIST_SUFFIXES:
            files += _listed(source)
            continue
        found, left = find_images([source], shards)
        files += found
        skipped += left
    return files, skipped


def plan_parts(files: list[Path], part_size: int) -> list[Part]:
    """``files`` in parts of ``part_size`` (the last one shorter)."""
    if part_size < 1:
        raise ValueError(f"part_size must be at least 1, got {part_size}")
    return [
        Part(i // part_size, tuple(map(shown, files[i : i + part_size])))
        for i in range(0, len(files), part_size)
    ]


def read_lines(folder: str | Path) -> list[dict[str, Any]]:
    """Every line of the part files of ``folder``, in order, parsed."""
    return [
        json.loads(line)
        for part in sorted(Path(folder).glob("part-*.jsonl"))
        for line in part.read_text(encoding="utf-8").splitlines()
    ]


class ResultsFolder:
    """The ``--out`` folder: its plan (checked or written by :meth:`open`), the parts still to write and
    :meth:`write` of one part."""

    def __init__(self, out: str | Path, parts: list[Part], *, model_sha256: str, top: int) -> None:
        self.out = Path(out)
        self.parts = parts
        files = [f for part in parts for f in part.files]
        self.plan = {
            "model_sha256": model_sha256,
            "top": top,
            "part_size": len(parts[0].files) if parts else 0,
            "images": len(files),
            "files_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest(),
            "files": files,
        }

    def open(self) -> list[Part]:
        """Write the plan (or check the one there) and return the parts not yet written."""
        path = self.out / PLAN_NAME
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            keys = ("model_sha256", "top", "part_size", "files_sha256")
            changed = [k for k in keys if old.get(k) != self.plan[k]]
            if changed:
                raise ValueError(
                    f"--out {self.out} holds the parts of another prediction ({', '.join(changed)} differ "
                    f"from {path}): choose another --out folder, or delete that one"
                )
        else:
            writer.write_text(path, json.dumps(self.plan, indent=1) + "\n")
        return [part for part in self.parts if not self.done(part)]

    def done(self, part: Part) -> bool:
        """Whether the part's file is there with one line per image (written whole: atomically)."""
        path = self.out / part.name
        return path.is_file() and len(path.read_text(encoding="utf-8").splitlines()) == len(part.files)

    def write(self, part: Part, items: list[dict[str, Any]]) -> Path:
        """The part's file: one JSON line per item, in the part's order."""
        if [item["path"] for item in items] != list(part.files):
            raise ValueError(f"{part.name}: the answers do not match the part's images")
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        return writer.write_text(self.out / part.name, text)


def _chunks(files: tuple[str, ...], size: int) -> Iterator[tuple[str, ...]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def shard_reader(
    location: tuple[str | Path, tuple[str, int, int, str]], stores: dict[str, ShardStore]
) -> Callable[[], bytes]:
    """What reads the bytes of one image of a shard set, ``(root, location)`` as :func:`find_sources`
    gives it: :func:`elope.data.shards.read_from_set` (``stores``: one :class:`ShardStore` per set and
    process, its open files)."""
    return lambda: read_from_set(location, stores)


def predict_part(
    run: Predictor,
    files: tuple[str, ...],
    top: int,
    batch_size: int,
    shards: Mapping[str, tuple[str | Path, tuple[str, int, int, str]]] | None = None,
    stores: dict[str, ShardStore] | None = None,
) -> list[dict[str, Any]]:
    """The items of ``files`` in order: decoded one by one (:func:`elope.tasks.predict.decode_source`),
    run ``batch_size`` at a time; an unreadable file gives ``{"path", "error"}``. A file in ``shards``
    (``SHARD/MEMBER`` -> ``(root, location)``) is read from its shard by byte range (:func:`shard_reader`,
    ``stores`` keeping the open sets)."""
    import torch

    shards = shards or {}
    stores = {} if stores is None else stores
    items: list[dict[str, Any]] = []
    for chunk in _chunks(files, batch_size):
        decoded = [
            decode_source(path, run.spec, shard_reader(shards[path], stores) if path in shards else None)
            for path in chunk
        ]
        good = [(path, d) for path, d in zip(chunk, decoded) if not isinstance(d, str)]
        answers: dict[str, dict[str, Any]] = {}
        if good:
            sources = torch.stack([d[0] for _, d in good])
            paths = [path for path, _ in good]
            answers = dict(zip(paths, predict_batch(run, paths, sources, [d[1] for _, d in good], top)))
        for path, d in zip(chunk, decoded):
            items.append({"path": str(path), "error": d} if isinstance(d, str) else answers[path])
    return items


def predict_to_folder(
    folder: ResultsFolder,
    load: Callable[[], Predictor],
    *,
    top: int,
    batch_size: int = 16,
    progress: bool = False,
    shards: dict[Path, Any] | None = None,
) -> int:
    """Write the parts of ``folder`` not yet written, in this process (the model from ``load()``, built
    only when a part is left); returns how many parts were written. ``shards``: where the images of shard
    sets lie (:func:`find_sources`)."""
    pending = folder.open()
    if not pending:
        return 0
    run = load()
    located = {shown(path): where for path, where in (shards or {}).items()}
    stores: dict[str, ShardStore] = {}
    try:
        for part in tqdm(pending, desc="predict", unit="part", disable=not progress):
            folder.write(part, predict_part(run, part.files, top, batch_size, located, stores))
    finally:
        for store in stores.values():
            store.close()
    return len(pending)
