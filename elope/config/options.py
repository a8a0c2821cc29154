"""What ``dataset.options`` of a recipe may hold (base layer, beside :mod:`elope.config`).

``dataset.options`` is passed to :func:`elope.data.build_dataset` as keyword arguments; an option the
dataset does not take used to surface as a traceback when the data was read, and a value out of range
(``max_pixels: -5``) was accepted and then misread (every image reported as a decompression bomb).
:func:`check_dataset_options` refuses both before anything runs, naming the option and the choices.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["AIRCRAFT_OPTIONS", "DatasetOptions", "check_dataset_options"]

#: The options only FGVC-Aircraft takes.
AIRCRAFT_OPTIONS = ("annotation_level", "remove_banner")


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
    zero_shot: Literal["seen", "unseen"] | None = Field(
        None, description="one half of the classes (elope.data.zero_shot): the metric-learning protocol"
    )


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
        raise ValueError(f"options.{e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    return checked.model_dump(exclude_unset=True)
