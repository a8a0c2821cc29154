"""``elope evaluate``'s ``localization`` block: the localization metrics of the field
(:mod:`elope.evaluation.localization_metrics`) for the localization module and for its teacher's mean feature
map (Table 4's two rows).

GT-known and top-1 localization accuracy come from the evaluation pass itself. MaxBoxAccV2 needs a second,
cheaper pass over a *selection split* (:func:`selection_split`: the run's validation split, else its
training split, never the evaluated split when another exists), on which each IoU level's heatmap
threshold is chosen; the evaluated split is then read at that threshold only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader

from elope.evaluation.localization_metrics import BoxAccCurve, LocalizationAccumulator
from elope.evaluation.loop import iterate
from elope.evaluation.outputs import Want
from elope.nn.model import ELoPE
from elope.runs.loaded import LoadedRun

__all__ = ["FieldLocalization", "field_localization", "selection_split"]


def selection_split(run: LoadedRun, evaluated: str) -> str:
    """The split MaxBoxAccV2's thresholds are chosen on: the run's validation split when it had one, else
    its training split (``model.json`` → ``splits``; ``trainval`` when not recorded), whichever is not the
    ``evaluated`` split (only when the training split itself is evaluated are they the same)."""
    splits = run.meta.get("splits") or {}
    train = (splits.get("train") or {}).get("split", "trainval")
    val = (splits.get("val") or {}).get("split")
    return next((s for s in (val, train) if s and s != evaluated), train)


def field_localization(
    run: LoadedRun, *, with_boxes: bool, mean_map: bool, maxboxacc: bool
) -> FieldLocalization | None:
    """The accumulators of an evaluation pass over images at the run's crop source: the module's where the
    run has one, the mean map's with ``mean_map``; None where the split has no boxes."""
    if not with_boxes:
        return None
    module = getattr(run.model, "localizer", None) is not None
    return FieldLocalization(run.spec.crop_source, module=module, mean_map=mean_map, maxboxacc=maxboxacc)


class FieldLocalization:
    """The module's and the mean map's :class:`LocalizationAccumulator` over the evaluated split (each
    None where it is not measured: no localization module; no ``--mean-map``)."""

    def __init__(self, frame: int, *, module: bool, mean_map: bool, maxboxacc: bool = True) -> None:
        self.frame, self.maxboxacc = frame, maxboxacc
        self.module = LocalizationAccumulator(frame) if module else None
        self.mean_map = LocalizationAccumulator(frame) if mean_map else None

    def update(self, labels: Tensor, gt_boxes: Tensor, out: Any) -> None:
        """Add a batch of :class:`elope.evaluation.outputs.BatchOutputs`."""
        keep = self.maxboxacc
        if self.module is not None:
            maps = out.heatmaps if keep else None
            self.module.update(labels, out.predictions, out.boxes, gt_boxes, maps)
        if self.mean_map is not None and out.mean_map_predictions is not None:
            maps = out.mean_map_heatmaps if keep else None
            self.mean_map.update(labels, out.mean_map_predictions, out.mean_map_boxes, gt_boxes, maps)

    def result(
        self,
        run: LoadedRun,
        teacher: ELoPE | None,
        where: tuple[str, str, str | Path],
        loader: tuple[int, int, bool],
    ) -> dict[str, Any]:
        """``{"module", "mean_map"}``, each :meth:`LocalizationAccumulator.result` (None where not measured).
        ``where``: the evaluated split, dataset and root; MaxBoxAccV2's thresholds are chosen on the
        :func:`selection_split` of that dataset, read with ``loader`` = (batch size, workers, skip
        unreadable images: the dataset's own substitution, which only weighs the choice)."""
        split = selection_split(run, where[0])
        curves: tuple[BoxAccCurve | None, BoxAccCurve | None] = (None, None)
        if self.maxboxacc and any(
            a is not None and a.curve is not None for a in (self.module, self.mean_map)
        ):
            dataset, _, _ = run.load_dataset(split, where[1], where[2])
            if loader[2] and hasattr(dataset, "skip_unreadable"):
                dataset.skip_unreadable = True
            curves = self._selection(run, teacher, dataset, loader[0], loader[1])
        return {
            "module": None if self.module is None else self.module.result(curves[0], split),
            "mean_map": None if self.mean_map is None else self.mean_map.result(curves[1], split),
        }

    def _selection(
        self, run: LoadedRun, teacher: ELoPE | None, dataset: Any, batch_size: int, workers: int
    ) -> tuple[BoxAccCurve | None, BoxAccCurve | None]:
        """The BoxAcc curves of the selection split: the module's heatmaps (its 64-px input only) and, with
        a teacher, its mean feature maps, as the evaluation pass computes them."""
        module = BoxAccCurve(self.frame) if self.module is not None else None
        mean_map = BoxAccCurve(self.frame) if self.mean_map is not None and teacher is not None else None
        predictor = run.predictor(teacher=teacher if mean_map is not None else None)
        want = Want(pipeline="heatmaps", top=0, boxes=False)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
        for (_, _, gt), out in iterate(predictor, loader, want):
            gt = gt.as_subclass(Tensor)
            if module is not None and out is not None and out.heatmaps is not None:
                module.update(out.heatmaps, gt)
            if mean_map is not None and out is not None and out.mean_map_heatmaps is not None:
                mean_map.update(out.mean_map_heatmaps, gt)
        return module, mean_map
