"""Datasets, transforms and splits for ELoPE (Sec. 6 and Table 1 of the paper).

``build_dataset(name, root, split, transform)`` reads CUB-200-2011, Stanford Cars and FGVC-Aircraft
exactly as their authors distribute them, your own class folders, or the procedural set written by
``write_synthetic``. ``dataset[i]`` is ``(image, label, box)``; see :class:`FGVCDataset`.
"""

from .aircraft import ANNOTATION_LEVELS, FGVCAircraft
from .annotations import DatasetIndex, Problem, Record
from .base import SPLITS, FGVCDataset
from .cars import StanfordCars
from .check import CheckReport, check_dataset
from .cub import CUB200
from .errors import AnnotationError, DataError, DatasetNotFoundError, ImageLoadError
from .folder import ImageFolderDataset
from .io import DEFAULT_MAX_PIXELS, image_dimensions, load_image, load_image_tensor
from .registry import DATASETS, build_dataset, index_dataset
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
    "ImageFolderDataset",
    "ImageLoadError",
    "Problem",
    "Record",
    "StanfordCars",
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
    "write_synthetic",
]
