"""The model's spec of a recipe (:class:`elope.spec.ModelSpec`), resolved once when a run is configured."""

from __future__ import annotations

from elope.config import Config
from elope.nn.backbones import pretrained_normalization
from elope.spec import ModelSpec

__all__ = ["run_spec"]


def run_spec(cfg: Config) -> ModelSpec:
    """The model's spec of a recipe, resolved once when the run is configured: ``dataset.image_size``,
    ``dataset.crop_source`` (:func:`elope.spec.crop_source_size`), ``model.tau`` (which the end of stage 2
    may replace, ``model.tau_select``) and the normalisation the backbone's initial weights expect
    (ImageNet's for ResNets, 0.5/0.5 for the EfficientNet-Lite weights)."""
    normalization = pretrained_normalization(cfg.model.backbone)
    d = cfg.dataset
    return ModelSpec.resolve(
        d.image_size,
        cfg.model.tau,
        d.crop_source,
        box_margin=cfg.model.box_margin,
        default_normalization=normalization,
    )
