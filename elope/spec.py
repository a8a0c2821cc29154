"""The model's spec: the whole inference contract of the one-pass pipeline, one typed, immutable value
(``docs/architecture.md``, "One definition per value").

Every value the pipeline of Fig. 1 (Hanselmann & Ney, WACV 2020) needs beside the weights is a field of
:class:`ModelSpec`, defined, defaulted and validated here and nowhere else:

* ``image_size``: the classifier's input side (Sec. 6: 448); the crops are resized to it;
* ``crop_source``: the side of the square image the crops are cut from (:func:`crop_source_size`:
  ``dataset.crop_source``, by default twice ``image_size``); the input side of an exported graph;
* ``tau``: the box threshold τ of Sec. 5 (Table 2: 0.3 CUB, 0.2 Cars and Aircraft), in ``[0, 1)``
  (:func:`check_tau`);
* ``mean``, ``std``: the normalisation of the inputs (None: what the backbone's initial weights expect,
  filled in when the model is built: :func:`elope.nn.model.model_spec`);
* ``box_margin``: how far the crop reaches beyond the box (ours; 0 in the paper), a share of the box's side
  added on each side (:func:`check_box_margin`);
* ``box_rule``: ``all`` (the paper: the box holds every heatmap cell above τ) or ``peak`` (ours: only the
  connected region around the heatmap's peak), :data:`BOX_RULES`;
* ``heatmap_upsample``: upsample the heatmap to the image before thresholding (ours; off in the paper);
* ``localizer_input``: the side of the localization module's input (Sec. 5: 64).

A spec is made once: from the recipe when a run is configured (:func:`elope.engine.run_spec.run_spec`),
from ``model.json`` when a model is loaded (:func:`elope.runs.model_folder.load_model`, where a command's
``--tau`` is applied) or from an exported file's metadata (:mod:`elope.exported`). Both files store it
once, written by :meth:`ModelSpec.to_dict` under the key ``spec`` and read by :meth:`ModelSpec.from_dict`;
files of older versions kept its values among others and are read by :meth:`ModelSpec.from_legacy`. The end
of stage 2 may choose τ on the training split (``model.tau_select``): the model then holds the spec with
that τ (:meth:`ModelSpec.replace`). No torch here: ``elope serve`` reads the spec too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "BOX_RULES",
    "CROP_SOURCE_RANGE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SIZE_RANGE",
    "LEGACY_VALUES",
    "LOCALIZER_INPUT_RANGE",
    "MARGIN_RANGE",
    "SPEC_FIELDS",
    "TAU_RANGE",
    "ModelSpec",
    "check_box_margin",
    "check_tau",
    "crop_source_size",
    "spec_default",
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

#: Sides in pixels, ``[low, high]``: the classifier's input (a side of 100,000 would need tens of GB), the
#: crop source (up to twice the largest classifier input) and the localization module's input.
IMAGE_SIZE_RANGE: tuple[int, int] = (16, 4096)
CROP_SOURCE_RANGE: tuple[int, int] = (16, 8192)
LOCALIZER_INPUT_RANGE: tuple[int, int] = (16, 4096)

#: How a box is read off a thresholded heatmap (:func:`elope.nn.localization.heatmap_to_box`).
BOX_RULES: tuple[str, ...] = ("all", "peak")

#: What a file written before a value was recorded meant by its absence: the behaviour of that elope (the
#: paper's choices). Not the defaults: a default may change, an old file's meaning does not.
LEGACY_VALUES: Mapping[str, Any] = MappingProxyType(
    {"box_margin": 0.0, "box_rule": "all", "heatmap_upsample": False, "localizer_input": 64}
)


def check_tau(tau: Any) -> float:
    """``tau`` as a float, or ValueError when it is not a number in :data:`TAU_RANGE` (NaN included).

    The one range check of τ: the spec's (the recipe's ``model.tau`` is checked with it when it is read).
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


def _side(name: str, value: Any, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number of pixels in {low}..{high}, got {value!r}")
    return value


def _channels(name: str, values: Any) -> tuple[float, float, float] | None:
    if values is None:
        return None
    ok = isinstance(values, Sequence) and not isinstance(values, str) and len(values) == 3
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be three finite numbers (R, G, B), got {values!r}")
    numbers = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be three finite numbers (R, G, B), got {list(values)!r}")
    return numbers  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelSpec:
    """How an image goes through the model: sides, τ, the box rule, upsampling, margin, normalisation.

    Every field has its one default here (the paper's recipe, Sec. 5-6) and is validated once, when the
    spec is made; frozen: a different τ is a new spec (:meth:`replace`). ``crop_source`` None is resolved
    at once (:func:`crop_source_size`); ``mean`` / ``std`` None stand for the backbone's statistics until
    the model is built (:func:`elope.nn.model.model_spec`).
    """

    image_size: int = 448
    crop_source: int | None = None
    tau: float = 0.3
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    box_margin: float = 0.0
    box_rule: str = "all"
    heatmap_upsample: bool = False
    localizer_input: int = 64

    def __post_init__(self) -> None:
        image_size = _side("image_size", self.image_size, IMAGE_SIZE_RANGE)
        source = crop_source_size(image_size) if self.crop_source is None else self.crop_source
        object.__setattr__(self, "crop_source", _side("crop_source", source, CROP_SOURCE_RANGE))
        object.__setattr__(self, "tau", check_tau(self.tau))
        object.__setattr__(self, "mean", _channels("mean", self.mean))
        object.__setattr__(self, "std", _channels("std", self.std))
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std are given together (or both left to the backbone's weights)")
        object.__setattr__(self, "box_margin", check_box_margin(self.box_margin))
        if self.box_rule not in BOX_RULES:
            raise ValueError(f"unknown box_rule {self.box_rule!r}; choose one of {BOX_RULES}")
        if not isinstance(self.heatmap_upsample, bool):
            raise ValueError(f"heatmap_upsample must be true or false, got {self.heatmap_upsample!r}")
        _side("localizer_input", self.localizer_input, LOCALIZER_INPUT_RANGE)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with ``changes`` (e.g. ``tau=0.5``), validated like a new spec."""
        return dataclasses.replace(self, **changes)

    def with_normalization(self, mean: Sequence[float], std: Sequence[float]) -> ModelSpec:
        """This spec with ``mean`` / ``std`` (the backbone's statistics) where it leaves them open."""
        if self.mean is not None:
            return self
        return self.replace(mean=tuple(mean), std=tuple(std))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, every field (:data:`SPEC_FIELDS`): what ``model.json`` and the export metadata store
        under ``spec``."""
        data = dataclasses.asdict(self)
        for name in ("mean", "std"):
            data[name] = None if data[name] is None else list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """The spec :meth:`to_dict` wrote; ValueError naming a missing or unknown key, or a value out of
        range."""
        if not isinstance(data, Mapping):
            raise ValueError(f"the spec must be a mapping of {list(SPEC_FIELDS)}, got {type(data).__name__}")
        missing = [k for k in SPEC_FIELDS if k not in data]
        unknown = [k for k in data if k not in SPEC_FIELDS]
        if missing or unknown:
            raise ValueError(f"the spec lacks {missing} / has unknown keys {unknown}")
        return cls(**dict(data))

    @classmethod
    def from_legacy(cls, data: Mapping[str, Any], **renamed: str) -> ModelSpec:
        """The spec of a file of an older version that kept the spec's values among others (``model.json``
        versions 1 and 2, export metadata version 1): its keys of :data:`SPEC_FIELDS` (``renamed`` maps a
        field to the key the file used, e.g. ``crop_source="input_size"``), the values the file leaves out
        meaning :data:`LEGACY_VALUES`; other keys are ignored."""
        values = {**LEGACY_VALUES}
        for name in SPEC_FIELDS:
            key = renamed.get(name, name)
            if key in data:
                values[name] = data[key]
        return cls.from_dict({name: values.get(name) for name in SPEC_FIELDS})


#: The fields of :class:`ModelSpec`, in order: the keys of ``spec`` in ``model.json`` and the metadata.
SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelSpec))


def spec_default(name: str) -> Any:
    """The default of the spec's field ``name``: what the recipe's schema takes for the same setting."""
    return {f.name: f.default for f in dataclasses.fields(ModelSpec)}[name]
