"""The dataset class shared by every reader: split selection, lazy loading, boxes, unreadable images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .annotations import DatasetIndex, Record
from .errors import DatasetNotFoundError, ImageLoadError
from .io import DEFAULT_MAX_PIXELS, decode_image, orient_box
from .splits import SPLITS, stratified_split
from .zero_shot import zero_shot_records

__all__ = ["SPLITS", "FGVCDataset", "select_split"]

_NAN_BOX = torch.full((4,), math.nan)


def select_split(index: DatasetIndex, split: str, val_fraction: float = 0.1, seed: int = 0) -> list[Record]:
    """The records of ``split``.

    ``trainval`` is the dataset's own full training split and ``test`` its test split. ``train``/``val``
    are the dataset's own when it ships a validation split (FGVC-Aircraft, a folder tree with ``val/``),
    otherwise a seeded stratified split of ``trainval`` (:func:`elope.data.splits.stratified_split`).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "trainval":
        return index.trainval()
    if split == "test" or "val" in index.splits:
        return index.splits[split]
    trainval = index.trainval()
    train, val = stratified_split([r.label for r in trainval], val_fraction=val_fraction, seed=seed)
    return [trainval[i] for i in (train if split == "train" else val)]


class FGVCDataset(Dataset):
    """Base of the dataset classes: ``dataset[i] -> (image, label, box)``.

    * ``image``: with ``transform=None`` a ``uint8`` tensor ``(3, H, W)`` of the image as loaded (RGB,
      FGVC-Aircraft's banner removed); otherwise ``transform(pil_image, boxes)`` — a
      ``torchvision.transforms.v2`` transform that receives a PIL RGB image and a
      ``tv_tensors.BoundingBoxes`` (XYXY) and moves the box with the image.
    * ``label``: 0-based class index into ``classes``.
    * ``box``: float32 tensor ``(4,)``, x1, y1, x2, y2 in pixels of the returned image (pixel edges: a box
      covering the whole W×H image is 0, 0, W, H), clamped to the image; all NaN when the dataset has
      no boxes. Boxes are for measuring localization only (Table 4), never for training.

    Unreadable images: with ``skip_unreadable=False`` (default) an :class:`ImageLoadError` naming the file
    is raised (a DataLoader re-raises it in the main process with the message intact). With
    ``skip_unreadable=True`` the sample is replaced by the next readable one (cyclically), which keeps
    batch sizes and works with any collate function and sampler; the replacement carries its own label,
    so no label is ever wrong. Every skipped index is flagged in a shared-memory tensor, so the flags set
    by DataLoader worker processes are visible in the main process: read ``skipped`` (count) and
    ``skipped_paths`` at the end of an epoch and report them.

    ``decode_size``: decode JPEGs in draft mode at the smallest scale whose sides stay >= this size
    (boxes are scaled to match). ``None`` takes ``transform.decode_size`` when the transform has one
    (:func:`elope.data.train_transform` and :func:`elope.data.eval_transform` do), else decodes at full
    size. ``0`` always decodes at full size.

    ``zero_shot``: ``seen`` or ``unseen``, one half of the classes with every image of it, the zero-shot
    retrieval protocol of metric learning (:mod:`elope.data.zero_shot`); None (default): all classes.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Any = None,
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_unreadable: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_size: int | None = None,
        zero_shot: str | None = None,
    ) -> None:
        index = self.build_index(root)
        index.raise_for_problems()
        classes = list(index.classes)
        if zero_shot is None:
            records = select_split(index, split, val_fraction=val_fraction, seed=seed)
        else:  # one half of the classes, every image of it (elope.data.zero_shot)
            classes, records = zero_shot_records(index, split, zero_shot, val_fraction, seed)
        if not records:
            raise DatasetNotFoundError(
                f"{index.name}: split {split!r} of the dataset at {index.root} holds no images.",
                str(index.root),
            )
        self.name = index.name
        self.root = index.root
        self.split = split
        self.transform = transform
        self.classes: list[str] = classes
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}
        by_name = dict(zip(index.classes, index.taxonomy))
        #: per class (as ``classes``): its original id and ranks where the dataset has them, else ``{}``
        self.taxonomy: list[dict[str, str]] = [by_name.get(name, {}) for name in classes]
        self.samples: list[tuple[str, int]] = [(str(r.path), r.label) for r in records]
        self.targets: list[int] = [r.label for r in records]
        self.has_boxes: bool = index.has_boxes
        self.banner = index.banner
        self._boxes: list[tuple[float, float, float, float] | None] = [r.box for r in records]
        self.skip_unreadable = bool(skip_unreadable)
        if int(max_pixels) < 1:
            raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
        self.max_pixels = int(max_pixels)
        self.decode_size = decode_size
        self._skipped = torch.zeros(len(records), dtype=torch.bool)
        if self.skip_unreadable:
            self._skipped.share_memory_()

    def build_index(self, root: str | Path) -> DatasetIndex:
        """Read the dataset's annotation files under ``root`` (each dataset class provides this)."""
        raise NotImplementedError

    def image_bytes(self, i: int) -> bytes | None:
        """The bytes of image ``i`` where they do not lie in a file of their own (a shard set:
        :mod:`elope.data.shards`); None: read ``samples[i]``'s path."""
        return None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def skipped(self) -> int:
        """How many distinct images were skipped as unreadable so far (all worker processes included)."""
        return int(self._skipped.sum())

    @property
    def skipped_paths(self) -> list[str]:
        """The files skipped as unreadable so far."""
        return [self.samples[i][0] for i in torch.nonzero(self._skipped).flatten().tolist()]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, torch.Tensor]:
        if not self.skip_unreadable:
            return self._load(index)
        n = len(self)
        for offset in range(n):
            i = (index + offset) % n
            try:
                return self._load(i)
            except ImageLoadError:
                self._skipped[i] = True
        raise ImageLoadError(f"{self.name}: no image of split {self.split!r} under {self.root} is readable")

    def _draft_size(self) -> int | None:
        size = (
            self.decode_size if self.decode_size is not None else getattr(self.transform, "decode_size", None)
        )
        return size or None

    def _load(self, i: int) -> tuple[Any, int, torch.Tensor]:
        path, label = self.samples[i]
        decoded = decode_image(
            path, max_pixels=self.max_pixels, draft_size=self._draft_size(), data=self.image_bytes(i)
        )
        image, (stored_w, stored_h) = decoded.image, decoded.size  # upright (EXIF orientation applied)
        width, height = image.size
        scale_x, scale_y = width / stored_w, height / stored_h
        if self.banner:
            if stored_h <= self.banner:
                raise ImageLoadError(
                    f"{path}: image is {stored_h} pixels high, too small to remove the {self.banner}-pixel banner",
                    path,
                )
            height = round((stored_h - self.banner) * scale_y)
            image = image.crop((0, 0, width, height))
        box = _NAN_BOX
        if self._boxes[i] is not None:  # plain floats: cheaper than a handful of tiny tensor ops
            # the box refers to the stored pixels: turned with the image when EXIF orientation turns it
            x1, y1, x2, y2 = orient_box(self._boxes[i], decoded.orientation, decoded.stored_size)
            box = torch.tensor(
                [
                    min(max(x1 * scale_x, 0.0), width),
                    min(max(y1 * scale_y, 0.0), height),
                    min(max(x2 * scale_x, 0.0), width),
                    min(max(y2 * scale_y, 0.0), height),
                ],
                dtype=torch.float32,
            )
        image_out, box = self._apply_transform(image, box)
        return image_out, label, box

    def _apply_transform(self, image: Image.Image, box: torch.Tensor) -> tuple[Any, torch.Tensor]:
        if self.transform is None:
            return F.pil_to_tensor(image), box.clone() if box is _NAN_BOX else box
        if box is _NAN_BOX:
            out, box = self.transform(image), box.clone()
        else:
            boxes = tv_tensors.BoundingBoxes(
                box[None], format="XYXY", canvas_size=(image.height, image.width)
            )
            out, moved = self.transform(image, boxes)
            box = moved.as_subclass(torch.Tensor).reshape(4).to(torch.float32)
        return (out.as_subclass(torch.Tensor) if isinstance(out, torch.Tensor) else out), box

    def __repr__(self) -> str:
        boxes = "with boxes" if self.has_boxes else "without boxes"
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} images, "
            f"{len(self.classes)} classes, {boxes})"
        )
