"""What ``dataset.options`` of a recipe may hold (base layer, beside :mod:`elope.config`).

``dataset.options`` is passed to :func:`elope.data.build_dataset` as keyword arguments; an option the
dataset does not take used to surface as a traceback when the data was read, and a value out of range
(``max_pixels: -5``) was accepted and then misread (every image reported as a decompression bomb).
:func:`check_dataset_options` refuses both before anything runs, naming the option and the choices.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "AIRCRAFT_OPTIONS",
    "CLASS_SUBSETS",
    "DatasetOptions",
    "check_class_subset",
    "check_dataset_options",
    "class_subset",
]

#: The options only FGVC-Aircraft takes.
AIRCRAFT_OPTIONS = ("annotation_level", "remove_banner")

#: The named values of ``dataset.options.classes``; ``"A-B"`` (1-based class ids, both included) is the other
#: form. ``first-half`` / ``second-half`` are the zero-shot retrieval protocol of metric-learning papers
#: (CUB-200-2011: train on classes 1-100, retrieve among 101-200).
CLASS_SUBSETS = ("all", "first-half", "second-half")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SUBSET_HELP = "use all, first-half, second-half or A-B (1-based class ids, e.g. 1-100)"


def check_class_subset(value: object) -> str:
    """``dataset.options.classes`` checked for its form (the range against the dataset's class count is
    checked when the dataset is read, :func:`class_subset`)."""
    if not isinstance(value, str) or (value not in CLASS_SUBSETS and not _RANGE.match(value)):
        raise ValueError(f"classes={str(value)[:40]!r} is not a class subset: {_SUBSET_HELP}")
    match = _RANGE.match(value)
    if match and not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"classes={value!r}: A-B needs 1 <= A <= B ({_SUBSET_HELP})")
    return value


def class_subset(value: str, num_classes: int) -> range:
    """The 0-based labels ``dataset.options.classes`` keeps of a dataset with ``num_classes`` classes (in
    the order of its class list): ``all``; ``first-half`` = the first ``num_classes // 2``;
    ``second-half`` = the rest; ``A-B`` = class ids A..B, 1-based, both included.

    Raises:
        ValueError: a malformed value, or a range past the dataset's classes (the message names the option).
    """
    check_class_subset(value)
    half = num_classes // 2
    named = {"all": range(num_classes), "first-half": range(half), "second-half": range(half, num_classes)}
    if value in named:
        return named[value]
    first, last = (int(v) for v in _RANGE.findall(value)[0])
    if last > num_classes:
        raise ValueError(
            f"dataset.options.classes={value!r}: the dataset has {num_classes} classes (ids 1-{num_classes}); "
            f"{_SUBSET_HELP}"
        )
    return range(first - 1, last)


class DatasetOptions(BaseModel):
    """The options of ``elope.data.build_dataset`` a recipe may set (the validation share has its own key,
    ``dataset.val_fraction``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(0, ge=0, lt=2**32, description="seed of the validation split")
    skip_unreadable: bool = False
    max_pixels: int = Field(100_000_000, ge=1, description="decompression-bomb cap")
    decode_size: int | None = Field(None, ge=0)
    annotation_level: Literal["variant", "family", "manufacturer"] = "variant"
    remove_banner: bool = True
    classes: str = Field(
        "all", description="which classes: all, first-half, second-half, or A-B (1-based ids)"
    )
    all_images: bool = Field(
        False,
        description="every split holds every image of the chosen classes (train and test): the zero-shot "
        "retrieval protocol (CUB: train on all images of 1-100, retrieve among all images of 101-200)",
    )

    @field_validator("classes")
    @classmethod
    def _subset_form(cls, value: str) -> str:
        return check_class_subset(value)


def check_dataset_options(dataset: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with their values checked (and typed), for a dataset named ``dataset``.

    Raises:
        ValueError: an option the dataset does not take, or a value of the wrong type or range; the message
            names it (``options.foo is unknown for cub; use seed, ...``).
    """
    allowed = [n for n in DatasetOptions.model_fields if dataset == "aircraft" or n not in AIRCRAFT_OPTIONS]
    if unknown := sorted(str(k)[:40] for k in options if k not in allowed):
        raise ValueError(f"options.{unknown[0]} is unknown for {dataset}; use {', '.join(allowed)}")
    try:
        checked = DatasetOptions.model_validate(options)
    except ValidationError as e:
        raise ValueError(
            f"options.{e.errors()[0]['loc'][0]}: {e.errors()[0]['msg'].removeprefix('Value error, ')}"
        ) from None
    return checked.model_dump(exclude_unset=True)
