"""The recipe's schema: one pydantic model per section (``dataset``, ``model``, ``loss``, ``stages``,
``train``), each refusing unknown keys, and :class:`Config` over them; a wrong key or value is a
:class:`elope.failures.ConfigError` naming the key path and what is allowed there."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from elope.config.files import read_yaml
from elope.config.options import Float, Int, check_dataset_options
from elope.failures import ConfigError, short_repr
from elope.spec import (
    BOX_RULES,
    CROP_SOURCE_RANGE,
    IMAGE_SIZE_RANGE,
    LOCALIZER_INPUT_RANGE,
    check_box_margin,
    check_tau,
    spec_default,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "STAGES",
    "AugmentConfig",
    "Config",
    "DatasetConfig",
    "LossConfig",
    "ModelConfig",
    "StageConfig",
    "StagesConfig",
    "SyntheticConfig",
    "TrainConfig",
    "recipe_folder",
]

STAGES = ("classifier", "localizer", "crop", "weighted")
StageName = Literal["classifier", "localizer", "crop", "weighted"]


class _Section(BaseModel):  # allow_inf_nan: every float refuses inf and NaN (lr=inf trained to NaN weights)
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False
    )


class SyntheticConfig(_Section):
    """Size and difficulty of the procedural data set written by ``elope.data.synthetic.write_synthetic``.

    ``difficulty`` names a preset of ``elope.data.synthetic.DIFFICULTIES`` ("fine": for ImageNet-pretrained
    backbones at 224 px); each knob left ``null`` takes the preset's value (see ``Difficulty``).
    """

    classes: Int = Field(6, ge=2, le=72)
    train: Int | list[Int] = Field(
        50, description="training images per class (>= 2), or one count per class: a long-tailed split"
    )
    test: Int = Field(20, ge=1, description="test images per class")
    size: Int = Field(96, ge=32, description="side of the generated images in pixels")
    seed: Int = 0
    difficulty: str = Field(
        "default", description="a preset of elope.data.synthetic.DIFFICULTIES (checked before a run starts)"
    )
    object_scale: tuple[Float, Float] | None = Field(
        None, description="critter width / image side (low, high)"
    )
    part_scale: Float | None = Field(None, ge=0.2, le=1.0)
    part_contrast: Float | None = Field(None, ge=0.05, le=1.0)
    decoys: tuple[Int, Int] | None = Field(None, description="(min, max) decoy blobs per image")
    distractors: Int | None = Field(None, ge=0, le=8)
    clutter: Float | None = Field(None, ge=0.0, le=1.0)
    placement: Literal["anywhere", "centred"] | None = None
    aspect: Float | None = Field(None, ge=0.25, le=4.0, description="frame width / height")
    lookalikes: Int | None = Field(None, ge=0, le=8)

    @model_validator(mode="after")
    def _check_ranges(self) -> SyntheticConfig:
        if not (0 <= self.seed < 2**32 and self.size <= 4096):
            raise ValueError(
                f"seed must lie in [0, 2**32) and size in [32, 4096], got {self.seed}, {self.size}"
            )
        if self.object_scale is not None and not 0.05 <= self.object_scale[0] <= self.object_scale[1] <= 1.0:
            raise ValueError(
                f"object_scale must be (low, high) with 0.05 <= low <= high <= 1, got {self.object_scale}"
            )
        counts = [self.train] if isinstance(self.train, int) else self.train
        if min(counts, default=0) < 2 or (isinstance(self.train, list) and len(counts) != self.classes):
            raise ValueError(
                f"train must be at least 2 images per class, or a list of {self.classes} such counts (one per "
                f"class), got {self.train}"
            )
        if self.decoys is not None and not 0 <= self.decoys[0] <= self.decoys[1] <= 64:
            raise ValueError(f"decoys must be (min, max) with 0 <= min <= max <= 64, got {self.decoys}")
        return self


class AugmentConfig(_Section):
    """Training augmentation (Sec. 6 and the authors' release): ±20° rotation, colour jitter 0.4, PCA
    lighting 0.1, plus a horizontal flip (always on)."""

    rotation: Float = Field(20.0, ge=0.0, le=180.0)
    jitter: Float = Field(0.4, ge=0.0)
    lighting: Float = Field(0.1, ge=0.0)


def recipe_folder() -> Traversable:
    """The packaged recipes' folder, ``elope/configs``: one ``<dataset>.yaml`` per dataset name."""
    return resources.files("elope") / "configs"


#: The recipes' dataset names, read off the packaged recipe files (``elope/configs/<name>.yaml``), in
#: alphabetical order: the one place a name is written is its recipe's file name (``elope.data.registry``
#: reads each; tests/test_registries.py holds the two equal).
DATASETS: tuple[str, ...] = tuple(
    sorted(f.name.removesuffix(".yaml") for f in recipe_folder().iterdir() if f.name.endswith(".yaml"))
)


class DatasetConfig(_Section):
    name: Literal[DATASETS]  # type: ignore[valid-type]
    root: str | None = None
    image_size: Int = Field(
        spec_default("image_size"),
        ge=IMAGE_SIZE_RANGE[0],
        le=IMAGE_SIZE_RANGE[1],
        description="classifier input side (Sec. 6: 448)",
    )
    crop_source: Int | None = Field(
        spec_default("crop_source"),
        ge=CROP_SOURCE_RANGE[0],
        le=CROP_SOURCE_RANGE[1],
        description="side of the image the crops are cut from (null: 2 × image_size); see "
        "elope.spec.crop_source_size",
    )
    val_fraction: Float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="0: train on the whole training split (the paper's models); > 0: hold out this share "
        "of it for validation (the dataset's own val split where it ships one) and select on it",
    )
    num_workers: Int = Field(4, ge=0, le=256)
    shard_streams: Int = Field(
        0,
        ge=0,
        le=65536,
        description="a shard set's training order (elope.engine.sampling.ShardSampler): the epoch cut into "
        "this many streams, each global batch an equal slice of each; the same value gives the same batches "
        "on any number of processes that divides it (0: one stream per process)",
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    options: dict[str, Any] = Field(default_factory=dict, description="extra build_dataset options")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @model_validator(mode="after")
    def _known_options(self) -> DatasetConfig:  # elope.config_options: only what the dataset takes
        object.__setattr__(self, "options", check_dataset_options(self.name, self.options))
        return self


class ModelConfig(_Section):
    backbone: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None
    k: Int = Field(4, ge=1, description="K of global k-max pooling, Eq. (3)")
    embedding_dim: Int = Field(512, ge=0, description="0 = plain linear classifier on pooled features")
    pooling: Literal["gap", "gmp", "gkmp"] = "gkmp"
    localizer: bool = True
    localizer_input: Int = Field(
        spec_default("localizer_input"), ge=LOCALIZER_INPUT_RANGE[0], le=LOCALIZER_INPUT_RANGE[1]
    )
    tau: Float = Field(
        spec_default("tau"), description="box threshold of Sec. 5 (Table 2), in [0, 1): elope.spec.check_tau"
    )
    tau_select: Literal["fixed", "boxes", "labels", "auto"] = Field(
        "fixed",
        description="fixed: model.tau (paper); boxes / labels: chosen at the end of stage 2 on the training "
        "split by its boxes / by class labels only; auto: boxes where the training split has them, else labels",
    )
    heatmap_upsample: bool = Field(
        spec_default("heatmap_upsample"),
        description="upsample the heatmap bilinearly to the image before thresholding (ours)",
    )
    box_rule: Literal[BOX_RULES] = Field(  # type: ignore[valid-type]  # elope.spec owns the names
        spec_default("box_rule"),
        description="all: the box holds every heatmap cell above tau (paper); peak: only the connected "
        "region around the heatmap's peak (ours)",
    )
    box_margin: Float = Field(
        spec_default("box_margin"), description="crop reach beyond the box, share of its side (0: paper)"
    )

    @field_validator("tau", "box_margin")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:  # the one range checks (elope.spec)
        return check_tau(value) if info.field_name == "tau" else check_box_margin(value)


class LossConfig(_Section):
    variant: Literal["none", "full", "within", "center", "dff"] = Field(
        "full", description="none = cross-entropy only; full = L_w + L_b (Eq. 5); see Table 5"
    )
    lambda_: Float = Field(2.0, alias="lambda", ge=0.0, description="λ of Eq. (1)")
    alpha: Float = Field(0.5, gt=0.0, le=1.0, description="α of Eq. (6)")
    gamma: Float = Field(16.0, ge=0.0, description="γ of Eq. (10)")
    margin: Float = Field(0.75, ge=0.0, description="m of Eq. (10)")
    renormalize_means: bool = False
    localizer_target: Literal["raw", "standardized"] = Field(
        "raw",
        description="stage 2: smooth L1 on the raw heatmaps (paper) or on per-image standardised ones (ours)",
    )
    class_weights: Literal["none", "inverse", "sqrt_inverse"] = Field(
        "none",
        description="long-tailed data: cross-entropy weight of class c proportional to 1/n_c (inverse) or "
        "1/sqrt(n_c), n_c its training images, scaled so the average training image weighs 1; none: the "
        "paper's unweighted loss (elope.engine.balance)",
    )


class StageConfig(_Section):
    """SGD with momentum and a step schedule: lr ÷ (1/lr_decay) every ``lr_step`` epochs."""

    epochs: Int = Field(ge=0)
    batch_size: Int = Field(ge=1, description="global batch (all processes together)")
    lr: Float = Field(gt=0.0)
    lr_step: Int = Field(ge=1)
    lr_decay: Float = Field(0.1, gt=0.0, le=1.0)
    momentum: Float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: Float = Field(1e-3, ge=0.0)
    init: Literal["continue", "fresh"] = Field(
        "continue",
        description="crop stage only: continue from the stage-1 classifier, or start afresh from the "
        "backbone's initial weights with new heads and class means (the authors' release)",
    )


class StagesConfig(_Section):
    classifier: StageConfig
    localizer: StageConfig
    crop: StageConfig
    weighted: StageConfig


class TrainConfig(_Section):
    stages: list[StageName] = Field(default_factory=lambda: list(STAGES))
    seed: Int = Field(0, ge=0, lt=2**32, description="what numpy's seeding takes")
    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    sync_bn: bool = False
    freeze_bn: bool = False
    select: Literal["best", "last"] = "last"
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle",
        description="shuffle: every training image once per epoch (the paper); balanced: each draw picks a "
        "class uniformly, then one of its images (long-tailed data; elope.engine.sampling)",
    )
    crop_decision: Literal["always", "holdout"] = Field(
        "always", description="always: crop (paper); holdout: crops or whole images by the val split"
    )
    checkpoint_every_steps: Int = Field(500, ge=0, description="0 = only at the end of each epoch")
    deterministic: bool = True
    progress: bool = True

    @field_validator("stages")
    @classmethod
    def _stages_in_order(cls, stages: list[str]) -> list[str]:
        order = [STAGES.index(s) for s in stages]
        if not stages or order != sorted(set(order)):
            raise ValueError(f"must be a non-empty subset of {list(STAGES)} in this order, without repeats")
        return stages

    @field_validator("device")
    @classmethod
    def _device_known(cls, d: str) -> str:
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return d


class Config(_Section):
    dataset: DatasetConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    stages: StagesConfig
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.loss.variant != "none" and self.model.embedding_dim == 0:
            raise ValueError(
                f"loss.variant={self.loss.variant!r} needs an embedding layer: set model.embedding_dim > 0 "
                "or loss.variant=none"
            )
        # (crop without the localization module fine-tunes on the whole image: the ablation's control row)
        if not self.model.localizer and "localizer" in self.train.stages:
            raise ValueError("train.stages holds localizer but model.localizer is false")
        fresh = [s for s in STAGES if s != "crop" and getattr(self.stages, s).init == "fresh"]
        if fresh:
            raise ValueError(f"stages.{fresh[0]}.init: only the crop stage can start fresh")
        if self.train.select == "best" and self.dataset.val_fraction == 0.0:
            raise ValueError(
                "train.select=best needs a validation split: set dataset.val_fraction > 0 "
                "(e.g. 0.1), or train.select=last (the paper's models train on the whole training split)"
            )
        crops = self.model.localizer and {"localizer", "crop"} <= set(self.train.stages)
        if self.train.crop_decision == "holdout" and crops and self.dataset.val_fraction == 0.0:
            raise ValueError(
                "train.crop_decision=holdout decides on a validation split: set dataset.val_fraction > 0 "
                "(e.g. 0.1), or train.crop_decision=always (the paper)"
            )
        if "weighted" in self.train.stages and self.model.pooling != "gkmp":
            raise ValueError(
                f"the weighted stage (Eq. 4) needs model.pooling=gkmp, got {self.model.pooling!r}; "
                "drop it from train.stages"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as e:
            raise ConfigError(_format_errors(e)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_yaml(Path(path)))


def _format_errors(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            lines.append(f"unknown config key {key!r}; allowed keys here: {', '.join(allowed)}")
        elif err["type"] == "missing":
            lines.append(f"config key {key!r} is missing")
        elif isinstance(err.get("input"), dict):  # a check across keys of a section
            where = f"config section {key!r}: " if loc else ""
            lines.append(where + err["msg"].removeprefix("Value error, "))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"config key {key!r}: {msg} (got {short_repr(err.get('input'))})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return [f.alias or n for n, f in model.model_fields.items()]
