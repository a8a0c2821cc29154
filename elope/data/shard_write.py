"""Write any dataset as a shard set (the format: :mod:`elope.data.shards`): ``elope data shard``.

Plain :mod:`tarfile` in the USTAR format, so that each member's bytes follow exactly one 512-byte header
and the manifest can give the byte offset of every image (what makes reading resumable at any sample and
by byte range from a URL); every header field that would vary between two writes (time, owner) is fixed,
so the same dataset and seed give the same bytes. Every file goes through :mod:`elope.writer` (atomic: a
killed write leaves no half shard); the manifest is written last, so a set without one is unfinished.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from elope import writer

from .annotations import Record
from .errors import ImageLoadError
from .registry import index_dataset
from .shards import FORMAT, HEADER, MANIFEST, VERSION

__all__ = ["DEFAULT_SHARD_SIZE", "write_shards"]

#: Images per shard: about 100 MB of JPEGs of the fine-grained datasets (the size WebDataset recommends).
DEFAULT_SHARD_SIZE = 1000

Progress = Callable[[Iterable[Any]], Iterable[Any]]


class _Counting:
    """A binary file that counts and hashes what is written to it (the shard's size and SHA-256)."""

    def __init__(self, file: Any) -> None:
        self.file, self.sha, self.n = file, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.n += len(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.n


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Add ``name`` with ``data``; returns the offset of its bytes in the tar file."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
    start = tar.offset
    tar.addfile(info, io.BytesIO(data))
    return start + HEADER


def _image_bytes(record: Record) -> bytes:
    try:
        return Path(record.path).read_bytes()
    except OSError as error:
        raise ImageLoadError(
            f"cannot read image {record.path}: {error.strerror or error}", str(record.path)
        ) from None


def _write_shard(
    path: Path, items: list[tuple[int, Record]], split: str, classes: list[str], columns: dict[str, list[Any]]
) -> dict[str, Any]:
    """One tar file of ``items`` (source position, record); fills their ``columns`` entries."""
    shard = int(path.stem.rsplit("-", 1)[1])
    with writer.open_write(path, "wb") as file:
        counting = _Counting(file)
        with tarfile.TarFile(fileobj=counting, mode="w", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[arg-type]
            for position, record in items:
                key = f"{split}-{position:08d}"
                ext = Path(record.path).suffix.lower().lstrip(".") or "jpg"
                data = _image_bytes(record)
                offset = _member(tar, f"{key}.{ext}", data)
                meta = {
                    "label": record.label,
                    "class": classes[record.label],
                    "box": record.box,
                    "id": record.key,
                }
                _member(tar, f"{key}.cls", str(record.label).encode())
                _member(tar, f"{key}.json", json.dumps(meta).encode())
                for column, value in (
                    ("key", key),
                    ("ext", ext),
                    ("shard", shard),
                    ("offset", offset),
                    ("size", len(data)),
                ):
                    columns[column][position] = value
    return {"file": path.name, "count": len(items), "bytes": counting.n, "sha256": counting.sha.hexdigest()}


def _write_split(
    out: Path,
    split: str,
    records: list[Record],
    classes: list[str],
    shard_size: int,
    seed: int,
    progress: Progress,
) -> dict[str, Any]:
    """The shards of one split: its records shuffled with ``seed``, ``shard_size`` per shard."""
    order = list(range(len(records)))
    random.Random(f"{seed}:{split}").shuffle(order)
    columns: dict[str, list[Any]] = {
        c: [None] * len(records) for c in ("key", "ext", "shard", "offset", "size")
    }
    columns.update(
        label=[r.label for r in records], box=[r.box for r in records], id=[r.key for r in records]
    )
    starts = range(0, len(order), shard_size)
    shards = [
        _write_shard(
            out / f"{split}-{n:05d}.tar",
            [(p, records[p]) for p in order[s : s + shard_size]],
            split,
            classes,
            columns,
        )
        for n, s in enumerate(progress(starts))
    ]
    return {"shards": shards, "samples": columns}


def write_shards(
    name: str,
    root: str | Path,
    out: str | Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    progress: Progress = lambda items: items,
) -> dict[str, Any]:
    """Write dataset ``name`` at ``root`` (any reader of :func:`elope.data.build_dataset`) as a shard set
    in ``out``; returns its manifest. ``options``: what changes what is read (FGVC-Aircraft's
    ``annotation_level``, ``remove_banner``). ``progress`` wraps the shards of each split (tqdm)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    options = dict(options or {})
    index = index_dataset(name, root, **options)
    index.raise_for_problems()
    out = writer.make_folder(out)
    splits = {s: r for s, r in index.splits.items() if not (s == "trainval" and "train" in index.splits)}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "source": {"dataset": name, "root": str(index.root), "options": options, "name": index.name},
        "shard_size": shard_size,
        "seed": seed,
        "classes": list(index.classes),
        "taxonomy": list(index.taxonomy),
        "has_boxes": index.has_boxes,
        "banner": index.banner,
        "splits": {
            s: _write_split(out, s, r, index.classes, shard_size, seed, progress) for s, r in splits.items()
        },
    }
    before = _files_of(out)
    writer.write_text(out / MANIFEST, json.dumps(manifest, separators=(",", ":")))
    for stale in before - _files_of(out):  # an earlier set's shards this one has no more of (--force)
        (out / stale).unlink(missing_ok=True)
    return manifest


def _files_of(out: Path) -> set[str]:
    """The shard files the manifest in ``out`` lists (none without one)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return {shard["file"] for part in manifest["splits"].values() for shard in part["shards"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
