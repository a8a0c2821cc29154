"""The model's spec: how an image reaches the model, one typed, immutable value (``docs/architecture.md``,
"One definition per value").

Four values decide what the one-pass pipeline of Fig. 1 (Hanselmann & Ney, WACV 2020) does to an image
before and around the backbone, and every layer reads them from here:

* ``image_size``: the classifier's input side (Sec. 6: 448); the crops are resized to it;
* ``crop_source``: the side of the square image the crops are cut from (:func:`crop_source_size`:
  ``dataset.crop_source``, by default twice ``image_size``);
* ``tau``: the box threshold τ of Sec. 5 (Table 2: 0.3 CUB, 0.2 Cars and Aircraft), in ``[0, 1)``
  (:func:`check_tau`);
* ``mean``, ``std``: the normalisation of the inputs (what the backbone's initial weights expect);
* ``box_margin``: how far the crop reaches beyond the box (ours; 0 in the paper), a share of the box's side
  added on each side (:func:`check_box_margin`), so a tight box around the body keeps the object's
  extremities in the crop.

A :class:`ModelSpec` is resolved once (:meth:`ModelSpec.resolve` fills the defaults): from the recipe
when a run is configured
(:func:`elope.engine.context.run_spec`), from ``model.json`` when a model is loaded
(:func:`elope.runs.model_folder.load_model`, where a command's ``--tau`` is applied), or from an exported
file's metadata (:class:`elope.deploy.runtime.ExportedModel`). The end of stage 2 may choose τ on the
training split (``model.tau_select``): the model then holds the spec with that τ, the one that
``model.json`` stores. The model's spec is :attr:`elope.ELoPE.spec`; its values are stored once, in
``model.json`` → ``model`` (the constructor arguments).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MARGIN_RANGE",
    "SPEC_FIELDS",
    "TAU_RANGE",
    "ModelSpec",
    "check_box_margin",
    "check_tau",
    "crop_source_size",
]

#: The ImageNet statistics (RGB, images in [0, 1]) that torchvision's and most timm weights expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: τ lies in ``[low, high)``: a heatmap cell belongs to the object when its min-max normalised value is
#: above τ, so τ = 0 keeps every cell but the minimum and τ = 1 would keep none.
TAU_RANGE: tuple[float, float] = (0.0, 1.0)

#: The box margin lies in ``[low, high]``: 0 crops at the box itself (the paper), 1 adds a whole box side on
#: each side (three times the box's width and height, clipped to the image).
MARGIN_RANGE: tuple[float, float] = (0.0, 1.0)

#: The constructor arguments of :class:`elope.ELoPE` that make up its spec (in ``model.json`` → ``model``).
SPEC_FIELDS: tuple[str, ...] = ("image_size", "crop_source", "tau", "mean", "std", "box_margin")


def check_tau(tau: Any) -> float:
    """``tau`` as a float, or ValueError when it is not a number in :data:`TAU_RANGE` (NaN included).

    The one range check of τ: the recipe (``model.tau``), the spec, ``heatmap_to_box`` and ``--tau`` use it.
    """
    low, high = TAU_RANGE
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not low <= tau < high:
        raise ValueError(f"tau must lie in [{low:g}, {high:g}), got {tau!r}")
    return float(tau)


def check_box_margin(margin: Any) -> float:
    """``margin`` as a float, or ValueError when it is not a number in :data:`MARGIN_RANGE` (NaN included);
    the one range check of the box margin (the recipe's ``model.box_margin``, the spec)."""
    low, high = MARGIN_RANGE
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not low <= margin <= high:
        raise ValueError(f"box_margin must lie in [{low:g}, {high:g}], got {margin!r}")
    return float(margin)


def crop_source_size(image_size: int, crop_source: int | None = None) -> int:
    """Side of the square image the crops are cut from (Sec. 5; ``dataset.crop_source`` of a recipe).

    The box of the localization module is relative to the image; it is applied to the original image
    decoded and resized (squashed, like the paper's 448×448 input) to this side, by default twice the
    classifier input: a crop of half the image keeps its full resolution (the gain of cropping early,
    Fig. 5), and memory stays bounded (4× the pixels of the classifier input). Originals smaller than this
    are upsampled, which loses nothing. ``crop_source = image_size`` cuts the crop from the classifier-size
    image instead (upsampling the crop: no resolution gained).
    """
    return int(crop_source) if crop_source else 2 * int(image_size)


def _channels(name: str, values: Sequence[float]) -> tuple[float, float, float]:
    numbers = tuple(float(v) for v in values)
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be three finite numbers (R, G, B), got {list(values)!r}")
    return numbers  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelSpec:
    """How an image reaches the model: classifier side, crop source side, τ and normalisation.

    Validated once, here; frozen: a different τ is a new spec (:meth:`replace`).
    """

    image_size: int
    crop_source: int
    tau: float
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    box_margin: float = 0.0

    def __post_init__(self) -> None:
        for name in ("image_size", "crop_source"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
        object.__setattr__(self, "tau", check_tau(self.tau))
        object.__setattr__(self, "box_margin", check_box_margin(self.box_margin))
        object.__setattr__(self, "mean", _channels("mean", self.mean))
        object.__setattr__(self, "std", _channels("std", self.std))
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {list(self.std)}")

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with ``changes`` (e.g. ``tau=0.5``), validated like a new spec."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"image_size", "crop_source", "tau", "mean": [...], "std": [...], "box_margin"}``."""
        return {
            "image_size": self.image_size,
            "crop_source": self.crop_source,
            "tau": self.tau,
            "mean": list(self.mean),
            "std": list(self.std),
            "box_margin": self.box_margin,
        }

    @classmethod
    def resolve(
        cls,
        image_size: int,
        tau: float,
        crop_source: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        box_margin: float = 0.0,
        *,
        default_normalization: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> ModelSpec:
        """The spec of a recipe's or a constructor's values, the defaults filled here and nowhere else: the
        crop source :func:`crop_source_size` (2 × ``image_size``), the normalisation
        ``default_normalization`` (what the backbone's weights expect:
        :func:`elope.nn.backbones.pretrained_normalization`)."""
        default_mean, default_std = default_normalization
        return cls(
            image_size=image_size,
            crop_source=crop_source_size(image_size, crop_source),
            tau=tau,
            mean=tuple(default_mean if mean is None else mean),
            std=tuple(default_std if std is None else std),
            box_margin=box_margin,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """The spec of a mapping holding :data:`SPEC_FIELDS` (other keys are ignored; a model saved before
        the box margin existed has none: 0, the crop at the box)."""
        return cls(
            image_size=int(data["image_size"]),
            crop_source=int(data["crop_source"]),
            tau=data["tau"],
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            box_margin=data.get("box_margin", 0.0),
        )
