"""What ``elope data check --dataset shards`` checks of a shard set beyond its images (:mod:`elope.data.shards`).

The shards themselves: every shard the manifest lists is there with the size it says, and its bytes have
the SHA-256 it says (each shard is read once, like every image file of the other layouts); a shard that is
missing or has the wrong size is reported once, and its images are then not read. The labels the manifest
gives are in range (the reader reports them: :func:`elope.data.shards.index_shards`). Image by image,
:func:`elope.data.check.check_dataset` reads each member (:func:`read_member` checks the tar header before
it names the image), decodes it and checks its box, as for any other layout.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record
from .shard_store import ShardStore
from .shards import FIX, index_shards, read_manifest, read_member, shard_size_problem

__all__ = ["ShardSetCheck", "check_shard_set", "shard_sha256"]

_BLOCK = 1 << 22  # 4 MiB per read (one HTTP Range request per block for a set behind a URL)

Progress = Callable[..., Iterable[Any]]


@dataclass
class ShardSetCheck:
    """A shard set as ``elope data check`` reads it: its index, the shards' problems, and which images can
    be read (those of the shards that are there with their size)."""

    index: DatasetIndex
    store: ShardStore
    where: dict[str, tuple[str, int, int, str]]
    problems: list[Problem] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)  # the store's files: one reader at a time

    def readable(self, record: Record) -> bool:
        """Whether ``record``'s shard is there with its size (else its image is not read)."""
        return self.where[str(record.path)][0] not in self.unreadable

    def read(self, record: Record) -> bytes:
        """The image bytes of ``record`` (raises :class:`ImageLoadError` when its member is not there); safe
        from several threads (the store seeks a shared file handle)."""
        with self.lock:
            return read_member(self.store, self.where[str(record.path)])


def shard_sha256(store: ShardStore, name: str) -> str:
    """SHA-256 of the shard ``name`` of ``store``, read in blocks (a local file or byte ranges of a URL)."""
    digest, offset = hashlib.sha256(), 0
    while block := store.read(name, offset, _BLOCK):
        digest.update(block)
        offset += len(block)
        if len(block) < _BLOCK:
            break
    return digest.hexdigest()


def check_shard_set(root: str | Path, progress: Progress | None = None) -> ShardSetCheck:
    """Read the shard set at ``root`` (a folder or URL) and check its shards (see the module).

    Raises :class:`elope.data.errors.DataError` when the manifest cannot be read at all.
    """
    store = ShardStore(root)
    manifest = read_manifest(store)
    where: dict[str, tuple[str, int, int, str]] = {}
    found = ShardSetCheck(index_shards(root, where, check=False), store, where)
    shards = [(split, shard) for split, part in manifest["splits"].items() for shard in part["shards"]]
    items = shards if progress is None else progress(shards, total=len(shards), desc="hashing shards")
    for split, shard in items:
        name, path = shard["file"], store.where(shard["file"])
        problem = shard_size_problem(store, split, shard)
        if problem is None and shard_sha256(store, name) != shard.get("sha256"):
            problem = (
                f"shard {path} of split {split!r} has the size the manifest says but not its SHA-256: its "
                f"bytes were changed or damaged; copy it again from where the set was written, or {FIX}"
            )
        elif problem is not None:
            found.unreadable.add(name)
        if problem is not None:
            found.problems.append(Problem(path, problem))
    return found
