"""Datasets by name: :func:`build_dataset` and :func:`index_dataset` (what ``elope data check`` reads)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .aircraft import FGVCAircraft, index_aircraft
from .annotations import DatasetIndex
from .base import SPLITS, FGVCDataset
from .cars import StanfordCars, index_cars
from .cub import CUB200, index_cub
from .dogs import StanfordDogs, index_dogs
from .flowers import Flowers102, index_flowers
from .folder import ImageFolderDataset, index_folder
from .inat import INat2017, INat2018, INat2021, index_inat2017, index_inat2018, index_inat2021
from .nabirds import NABirds, index_nabirds
from .pets import OxfordPets, index_pets
from .shards import ShardDataset, index_shards

__all__ = ["DATASETS", "READERS", "Reader", "build_dataset", "index_dataset"]


class Reader(NamedTuple):
    """How one dataset name is read: its class (:func:`build_dataset`) and the function that reads its
    annotations without raising (:func:`index_dataset`, ``elope data check``, ``elope data shard``)."""

    dataset: type[FGVCDataset]
    index: Callable[..., DatasetIndex]


#: name -> its :class:`Reader`: the one table of dataset names below the recipes (each name has its recipe
#: ``elope/configs/<name>.yaml``: tests/test_registries.py). "synthetic" is the procedural set of
#: :mod:`elope.data.synthetic`, which is written in the CUB-200-2011 layout and read by the CUB reader.
#: "shards" is any of them written as tar shards by ``elope data shard`` (:mod:`elope.data.shards`): its
#: root is a folder or a URL.
READERS: dict[str, Reader] = {
    "cub": Reader(CUB200, index_cub),
    "cars": Reader(StanfordCars, index_cars),
    "aircraft": Reader(FGVCAircraft, index_aircraft),
    "folder": Reader(ImageFolderDataset, index_folder),
    "synthetic": Reader(CUB200, index_cub),
    "nabirds": Reader(NABirds, index_nabirds),
    "dogs": Reader(StanfordDogs, index_dogs),
    "inat2017": Reader(INat2017, index_inat2017),
    "inat2018": Reader(INat2018, index_inat2018),
    "inat2021": Reader(INat2021, index_inat2021),
    "flowers102": Reader(Flowers102, index_flowers),
    "pets": Reader(OxfordPets, index_pets),
    "shards": Reader(ShardDataset, index_shards),
}

#: name -> dataset class (read off :data:`READERS`).
DATASETS: dict[str, type[FGVCDataset]] = {name: reader.dataset for name, reader in READERS.items()}


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def _options_of(cls: type[FGVCDataset]) -> list[str]:
    """The keyword options a dataset class takes: its own, and the base class's when it passes ``**options``
    on (FGVC-Aircraft)."""
    params = inspect.signature(cls.__init__).parameters
    names = [p for p, v in params.items() if v.kind is not inspect.Parameter.VAR_KEYWORD]
    if any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values()):
        names += [p for p in inspect.signature(FGVCDataset.__init__).parameters if p not in names]
    return [p for p in names if p not in ("self", "root", "split", "transform")]


def build_dataset(
    name: str, root: str | Path, split: str, transform: Any = None, **options: Any
) -> FGVCDataset:
    """Build a dataset by name.

    Args:
        name: a name of :data:`READERS` (``cub``, ``cars``, ``aircraft``, ...; each has its recipe
            ``elope/configs/<name>.yaml``).
        root: where the dataset lies, exactly as its authors distribute it (see each class).
        split: ``train``, ``val``, ``test`` or ``trainval``. ``trainval`` is the dataset's own training
            split; ``train``/``val`` are a seeded stratified split of it (``val_fraction=0.1``, ``seed=0``)
            unless the dataset ships a validation split (aircraft, flowers102, ``folder`` with ``val/``). The test split
            is for the final evaluation only, never for choosing anything.
        transform: a ``torchvision.transforms.v2`` transform applied to image and box together, e.g.
            :func:`elope.data.train_transform` / :func:`elope.data.eval_transform`.
        **options: keyword arguments of the dataset class: ``val_fraction``, ``seed``, ``skip_unreadable``,
            ``max_pixels``, ``decode_size``; for aircraft also ``annotation_level`` and ``remove_banner``.

    Raises:
        ValueError: unknown name, split or option.
        DatasetNotFoundError: the dataset is not where ``root`` says, or lacks a required file.
        AnnotationError: an annotation file is malformed (the message names the file and line).
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    cls = DATASETS[name]
    allowed = _options_of(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; expected {', '.join(allowed)}"
        )
    return cls(root, split, transform, **options)


def index_dataset(name: str, root: str | Path, **options: Any) -> DatasetIndex:
    """Read a dataset's annotations into a :class:`DatasetIndex` without raising on malformed lines.

    Only the options both the dataset class and its indexer take change what is read (aircraft:
    ``annotation_level`` and ``remove_banner``); other options are ignored. Raises :class:`DatasetNotFoundError` when the dataset cannot be read at all.
    """
    _check_name(name)
    reader = READERS[name]
    keys = set(_options_of(reader.dataset)) & set(inspect.signature(reader.index).parameters)
    return reader.index(root, **{k: v for k, v in options.items() if k in keys})
