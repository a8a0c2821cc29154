"""The model's spec of a recipe (:class:`elope.spec.ModelSpec`), resolved once when a run is configured."""

from __future__ import annotations

from elope.config import Config
from elope.nn.model import model_spec
from elope.spec import ModelSpec

__all__ = ["run_spec"]


def run_spec(cfg: Config) -> ModelSpec:
    """The model's spec of a recipe, made once when the run is configured: ``dataset.image_size`` and
    ``dataset.crop_source``, ``model.tau`` (which the end of stage 2 may replace, ``model.tau_select``),
    ``model.box_rule``, ``model.heatmap_upsample``, ``model.box_margin``, ``model.localizer_input``, and
    the normalisation the backbone's initial weights expect (:func:`elope.nn.model.model_spec`)."""
    d, m = cfg.dataset, cfg.model
    spec = ModelSpec(
        image_size=d.image_size,
        crop_source=d.crop_source,
        tau=m.tau,
        box_margin=m.box_margin,
        box_rule=m.box_rule,
        heatmap_upsample=m.heatmap_upsample,
        localizer_input=m.localizer_input,
    )
    return model_spec(m.backbone, spec)
