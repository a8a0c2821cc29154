"""Datasets, transforms and splits for ELoPE (Sec. 6 and Table 1 of the paper).

``build_dataset(name, root, split, transform)`` reads CUB-200-2011, Stanford Cars and FGVC-Aircraft
exactly as their authors distribute them, NABirds, Stanford Dogs, iNaturalist 2017 / 2018 / 2021, Oxford
Flowers-102 and Oxford-IIIT Pet as well, your own class folders, or the procedural set written by
``write_synthetic``. ``dataset[i]`` is ``(image, label, box)``; see :class:`FGVCDataset`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from elope.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and editors
    from .aircraft import ANNOTATION_LEVELS, FGVCAircraft
    from .annotations import DatasetIndex, Problem, Record
    from .base import SPLITS, FGVCDataset
    from .cars import StanfordCars
    from .check import CheckReport, check_dataset
    from .cub import CUB200
    from .dogs import StanfordDogs
    from .errors import AnnotationError, DataError, DatasetNotFoundError, ImageLoadError
    from .flowers import Flowers102
    from .folder import ImageFolderDataset
    from .inat import INat2017, INat2018, INat2021
    from .io import DEFAULT_MAX_PIXELS, image_dimensions, load_image, load_image_tensor
    from .nabirds import NABirds
    from .pets import OxfordPets
    from .registry import DATASETS, build_dataset, index_dataset
    from .shard_write import write_shards
    from .shards import ShardDataset
    from .splits import stratified_split
    from .synthetic import write_synthetic
    from .transforms import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        ToNormalizedTensor,
        crop_source_size,
        eval_transform,
        train_transform,
    )

# Imported on first use (PEP 562): `elope --help` and the commands' option lists read light modules of this
# package (its errors, names and knobs) without importing torch (tests/test_cli_help.py).
_LAZY: dict[str, str] = {
    "ANNOTATION_LEVELS": "elope.data.aircraft",
    "AnnotationError": "elope.data.errors",
    "CUB200": "elope.data.cub",
    "CheckReport": "elope.data.check",
    "DATASETS": "elope.data.registry",
    "DEFAULT_MAX_PIXELS": "elope.data.io",
    "DataError": "elope.data.errors",
    "DatasetIndex": "elope.data.annotations",
    "DatasetNotFoundError": "elope.data.errors",
    "FGVCAircraft": "elope.data.aircraft",
    "FGVCDataset": "elope.data.base",
    "Flowers102": "elope.data.flowers",
    "IMAGENET_MEAN": "elope.data.transforms",
    "IMAGENET_STD": "elope.data.transforms",
    "INat2017": "elope.data.inat",
    "INat2018": "elope.data.inat",
    "INat2021": "elope.data.inat",
    "ImageFolderDataset": "elope.data.folder",
    "ImageLoadError": "elope.data.errors",
    "NABirds": "elope.data.nabirds",
    "OxfordPets": "elope.data.pets",
    "Problem": "elope.data.annotations",
    "Record": "elope.data.annotations",
    "SPLITS": "elope.data.base",
    "ShardDataset": "elope.data.shards",
    "StanfordCars": "elope.data.cars",
    "StanfordDogs": "elope.data.dogs",
    "ToNormalizedTensor": "elope.data.transforms",
    "build_dataset": "elope.data.registry",
    "check_dataset": "elope.data.check",
    "crop_source_size": "elope.data.transforms",
    "eval_transform": "elope.data.transforms",
    "image_dimensions": "elope.data.io",
    "index_dataset": "elope.data.registry",
    "load_image": "elope.data.io",
    "load_image_tensor": "elope.data.io",
    "stratified_split": "elope.data.splits",
    "train_transform": "elope.data.transforms",
    "write_shards": "elope.data.shard_write",
    "write_synthetic": "elope.data.synthetic",
}

__all__ = [
    "ANNOTATION_LEVELS",
    "CUB200",
    "DATASETS",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "AnnotationError",
    "CheckReport",
    "DataError",
    "DatasetIndex",
    "DatasetNotFoundError",
    "FGVCAircraft",
    "FGVCDataset",
    "Flowers102",
    "INat2017",
    "INat2018",
    "INat2021",
    "ImageFolderDataset",
    "ImageLoadError",
    "NABirds",
    "OxfordPets",
    "Problem",
    "Record",
    "ShardDataset",
    "StanfordCars",
    "StanfordDogs",
    "ToNormalizedTensor",
    "build_dataset",
    "check_dataset",
    "crop_source_size",
    "eval_transform",
    "image_dimensions",
    "index_dataset",
    "load_image",
    "load_image_tensor",
    "stratified_split",
    "train_transform",
    "write_shards",
    "write_synthetic",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
