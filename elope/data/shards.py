"""A dataset written as WebDataset tar shards, read back: ``--dataset shards --root FOLDER_OR_URL``.

``elope data shard`` (:mod:`elope.data.shard_write`) writes any dataset as a *shard set*::

    FOLDER/shards.json            the manifest (below)
    FOLDER/train-00000.tar ...    one series of tar files per split the dataset defines
    FOLDER/test-00000.tar ...

Each sample of a tar file is three members in the WebDataset convention (one key, several extensions):
``KEY.jpg`` (or the image's own extension: its bytes, unchanged), ``KEY.cls`` (the 0-based label as text)
and ``KEY.json`` (``label``, ``class``, ``box`` x1,y1,x2,y2 in stored pixels or null, ``id``: the image's
id in the source dataset). Any WebDataset reader reads them; elope reads them by byte range instead.

The manifest (``format: elope-shards``, ``version``) holds the source dataset (name, root, options), the
class names and taxonomy, whether boxes are present, the banner to remove (FGVC-Aircraft), and per split
its shards (file, image count, bytes, SHA-256) and its samples *in the source dataset's order*, with the
shard, byte offset and size of each image. Reading the samples in source order keeps every split what the
source dataset gives (the seeded ``train``/``val`` split of ``trainval`` selects the same images), while
the images themselves lie shuffled across the shards (the writer's seed), so that a shard is a random
share of the split: :class:`elope.engine.sampling.ShardSampler` reads whole shards per process.

Checks: the manifest's format and version; every shard present with the size the manifest says (else a
:class:`DatasetNotFoundError` naming the shard and the fix) before anything is read; and for every image
read, the tar header before its bytes names it (else an :class:`ImageLoadError`: the shard was damaged or
replaced).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .annotations import DatasetIndex, Problem, Record
from .base import FGVCDataset
from .errors import AnnotationError, DatasetNotFoundError, ImageLoadError
from .shard_store import ShardStore, normalize_root

__all__ = [
    "FIX",
    "FORMAT",
    "HEADER",
    "MANIFEST",
    "VERSION",
    "ShardDataset",
    "check_shards",
    "index_shards",
    "read_from_set",
    "read_manifest",
    "read_member",
    "shard_images",
    "shard_set_root",
    "shard_size_problem",
]

MANIFEST = "shards.json"
FORMAT = "elope-shards"
VERSION = 1
HEADER = 512  # a USTAR tar header: each member's bytes follow one (names under 100 characters)

#: How a damaged shard set is mended (the messages of the reader and of ``elope data check`` end with it).
FIX = "write the shard set again: `elope data shard ... --out FOLDER --force`"


def read_manifest(store: ShardStore) -> dict[str, Any]:
    """The manifest of the shard set at ``store``, its format checked."""
    where = store.where(MANIFEST)
    try:
        manifest = json.loads(store.read_all(MANIFEST))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(f"{where}: not a JSON manifest ({error}); {FIX}", where) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AnnotationError(f"{where}: not the manifest of an elope shard set; {FIX}", where)
    if manifest.get("version") != VERSION:
        raise AnnotationError(
            f"{where}: shard set version {manifest.get('version')!r}, this elope reads version {VERSION}; "
            f"{FIX}",
            where,
        )
    return manifest


def shard_size_problem(store: ShardStore, split: str, shard: dict[str, Any]) -> str | None:
    """What is wrong with the size of ``shard`` (a manifest entry of ``split``): the sentence naming the
    shard and the fix, or None when it is there with the size the manifest says."""
    size = store.size(shard["file"])
    if size == shard["bytes"]:
        return None
    state = "is missing" if size is None else f"has {size} bytes, the manifest says {shard['bytes']}"
    return (
        f"shard set {store.root}: shard {store.where(shard['file'])} of split {split!r} {state} "
        f"(copied incompletely or damaged); copy it again from where the set was written, or {FIX}"
    )


def check_shards(store: ShardStore, manifest: dict[str, Any]) -> None:
    """Every shard of the manifest is there with its size: the first one that is not is named."""
    for split, part in manifest["splits"].items():
        for shard in part["shards"]:
            problem = shard_size_problem(store, split, shard)
            if problem is not None:
                raise DatasetNotFoundError(problem, store.where(shard["file"]))


def _records(
    store: ShardStore,
    part: dict[str, Any],
    where: dict[str, tuple[str, int, int, str]],
    num_classes: int,
    problems: list[Problem],
) -> list[Record]:
    """The records of one split in source order; ``where`` receives each image's shard, offset, size and
    member name, by the record's path (``SHARD/MEMBER``, a name for messages: no such file exists). A label
    outside the class list is a problem (the record is left out)."""
    files = [shard["file"] for shard in part["shards"]]
    s = part["samples"]
    records = []
    for key, ext, label, box, image_id, shard, offset, size in zip(
        s["key"], s["ext"], s["label"], s["box"], s["id"], s["shard"], s["offset"], s["size"], strict=True
    ):
        member = f"{key}.{ext}"
        path = Path(f"{store.where(files[shard])}/{member}")  # as the dataset's samples name it
        if not (isinstance(label, int) and 0 <= label < num_classes):
            problems.append(
                Problem(
                    str(path),
                    f"label {label!r} is out of range ({store.where(MANIFEST)} has classes 0..{num_classes - 1}); "
                    f"{FIX}",
                )
            )
            continue
        where[str(path)] = (files[shard], offset, size, member)
        records.append(Record(path, label, None if box is None else tuple(box), key=image_id))
    return records


def index_shards(
    root: str | Path, where: dict[str, tuple[str, int, int, str]] | None = None, *, check: bool = True
) -> DatasetIndex:
    """The shard set at ``root`` (a folder or URL) as a :class:`DatasetIndex`; its shards' sizes are checked
    first (:func:`check_shards`) unless ``check`` is false (``elope data check`` reports them itself:
    :mod:`elope.data.shard_check`)."""
    store = ShardStore(root)
    manifest = read_manifest(store)
    if check:
        check_shards(store, manifest)
    where = {} if where is None else where
    classes = list(manifest["classes"])
    problems: list[Problem] = []
    splits = {
        split: _records(store, part, where, len(classes), problems)
        for split, part in manifest["splits"].items()
    }
    source = manifest["source"]
    return DatasetIndex(
        name=f"shard set of {source['dataset']}",
        root=Path(store.root),
        classes=classes,
        splits=splits,
        has_boxes=bool(manifest["has_boxes"]),
        problems=problems,
        banner=int(manifest.get("banner", 0)),
        taxonomy=[dict(t) for t in manifest.get("taxonomy", [])],
        check_as="shards",
    )


class ShardDataset(FGVCDataset):
    """A shard set (see the module) read like the dataset it was written from: same splits, classes,
    boxes and items (``dataset[i] -> (image, label, box)``). ``root``: its folder or URL.

    ``shard_of[i]`` is the shard (an index into ``shard_files``) that holds item ``i``: what
    :class:`elope.engine.sampling.ShardSampler` orders an epoch by.
    """

    def build_index(self, root: str | Path) -> DatasetIndex:
        self._locations: dict[str, tuple[str, int, int, str]] = {}
        self.store = ShardStore(root)
        return index_shards(root, self._locations)

    def __init__(self, root: str | Path, split: str = "train", transform: Any = None, **options: Any) -> None:
        super().__init__(root, split, transform, **options)
        self._where = [self._locations[path] for path, _ in self.samples]
        del self._locations
        self.shard_files: list[str] = sorted({w[0] for w in self._where})
        number = {name: i for i, name in enumerate(self.shard_files)}
        self.shard_of: list[int] = [number[w[0]] for w in self._where]

    def image_bytes(self, i: int) -> bytes:
        """Image ``i``'s bytes from its shard (:func:`read_member`)."""
        return read_member(self.store, self._where[i])


def read_member(store: ShardStore, location: tuple[str, int, int, str]) -> bytes:
    """The bytes of the image at ``location`` (shard, offset, size, member name) of the set at ``store``,
    after checking that the tar header before them names it."""
    shard, offset, size, member = location
    data = store.read(shard, offset - HEADER, size + HEADER)
    name = data[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if len(data) != size + HEADER or name != member:
        found = f"member {name!r}" if len(data) == size + HEADER else f"{len(data)} of {size + HEADER} bytes"
        where = store.where(shard)
        raise ImageLoadError(
            f"{where}: expected {member} at byte {offset - HEADER}, found {found}: the shard was damaged "
            f"or replaced since its manifest was written; {FIX}",
            where,
        )
    return data[HEADER:]


def read_from_set(
    place: tuple[str | Path, tuple[str, int, int, str]], stores: dict[str, ShardStore]
) -> bytes:
    """The bytes of one image of a shard set, ``place`` = ``(root, location)`` as ``elope predict`` finds it
    (:func:`read_member` at ``location``), through ``stores``' :class:`ShardStore` of ``root``: one per set,
    kept by the caller (its open files)."""
    root, (shard, offset, size, member) = place
    key = str(root)
    return read_member(stores.setdefault(key, ShardStore(key)), (shard, int(offset), int(size), member))


def shard_images(path: str | Path) -> dict[Path, tuple[str, int, int, str]] | None:
    """The images of a shard set's folder, or of one of its ``.tar`` shards, by name (``SHARD/MEMBER``):
    their locations for :func:`read_member` with ``ShardStore(shard_set_root(path))``; None when ``path``
    is neither (``elope predict`` reads shards so). An ``http(s)://`` URL is taken as a shard set's (or,
    ending in ``.tar``, one of its shards'): its images are named as :class:`ShardDataset` names them."""
    root = shard_set_root(path)
    if root is None:
        return None
    where: dict[str, tuple[str, int, int, str]] = {}
    index_shards(root, where)
    given = Path(normalize_root(path))
    whole = given.is_dir() or given.suffix != ".tar"  # the set's folder (or URL), not one of its shards
    return {Path(name): loc for name, loc in where.items() if whole or loc[0] == given.name}


def shard_set_root(path: str | Path) -> Path | str | None:
    """The shard set's folder when ``path`` is one or is a ``.tar`` file in one; for an ``http(s)://`` URL
    (its ``//`` maybe collapsed by a click path), the set's URL; else None."""
    text = normalize_root(path)
    if text.startswith(("http://", "https://")):
        return text.rsplit("/", 1)[0] if text.endswith(".tar") else text.rstrip("/")
    path = Path(text)
    if path.is_dir():
        return path if (path / MANIFEST).is_file() else None
    if path.suffix == ".tar" and (path.parent / MANIFEST).is_file():
        return path.parent
    return None
