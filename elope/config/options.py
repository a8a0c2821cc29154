"""What ``dataset.options`` of a recipe may hold, and the recipe's number types (base layer, beside
:mod:`elope.config`).

:data:`Int` and :data:`Float` are the types of every number of a recipe: ``int`` and ``float`` that refuse a
boolean. YAML 1.1 (what PyYAML reads) takes ``yes``, ``no``, ``on``, ``off``, ``true`` and ``false`` as
booleans, and pydantic's lax mode turns a boolean into 1 or 0, so ``lambda: yes`` trained with λ = 1.0 and
``epochs: on`` with one epoch, without a word. Pydantic's strict mode would refuse booleans too, but also
what the lax mode rightly accepts: PyYAML reads ``lr: 1e-3`` (no dot) as the string ``"1e-3"``, and a
tuple of the recipe arrives as a YAML list; a YAML loader that kept ``yes`` and ``no`` as strings would
still let ``true`` through. So the refusal is of booleans alone, where a number is expected, by the schema:
the message names the key (``config key 'loss.lambda': ... is a boolean ...``).

``dataset.options`` is passed to :func:`elope.data.build_dataset` as keyword arguments; an option the
dataset does not take used to surface as a traceback when the data was read, and a value out of range
(``max_pixels: -5``) was accepted and then misread (every image reported as a decompression bomb).
:func:`check_dataset_options` refuses both before anything runs, naming the option and the choices.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = ["AIRCRAFT_OPTIONS", "DatasetOptions", "Float", "Int", "check_dataset_options"]


def _not_a_boolean(value: Any) -> Any:
    """Refuse a boolean where a number is expected (a YAML ``yes`` / ``on`` / ``true`` is one)."""
    if isinstance(value, bool):
        raise ValueError(
            "expected a number, got a boolean (YAML reads yes/no, on/off, true/false as booleans): "
            "write the number"
        )
    return value


#: A whole number of the recipe: ``int`` that refuses a boolean (see the module's docstring).
Int = Annotated[int, BeforeValidator(_not_a_boolean)]
#: A real number of the recipe: ``float`` that refuses a boolean.
Float = Annotated[float, BeforeValidator(_not_a_boolean)]

#: The options only FGVC-Aircraft takes.
AIRCRAFT_OPTIONS = ("annotation_level", "remove_banner")


class DatasetOptions(BaseModel):
    """The options of ``elope.data.build_dataset`` a recipe may set (the validation share has its own key,
    ``dataset.val_fraction``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: Int = Field(0, ge=0, lt=2**32, description="seed of the validation split")
    skip_unreadable: bool = False
    max_pixels: Int = Field(100_000_000, ge=1, description="decompression-bomb cap")
    decode_size: Int | None = Field(None, ge=0)
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
        first = e.errors()[0]
        raise ValueError(f"options.{first['loc'][0]}: {first['msg'].removeprefix('Value error, ')}") from None
    return checked.model_dump(exclude_unset=True)
