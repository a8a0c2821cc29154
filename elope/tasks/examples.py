"""A sheet of localization examples from a trained run, like the paper's Figs. 2, 4 and 6.

For each chosen test image, two panels side by side: the mean feature map of the whole image in the run's
stage-1 classifier (``RUN/teacher``, the localization module's teacher; the run's final model for runs
that keep none) with the box it gives at τ (the Table 4 baseline, Figs. 2 and 4), and the localization
module's heatmap with its box (Fig. 6), from the one pass of :meth:`elope.ELoPE.predict`. The ground-truth box is drawn too, and each title gives the box's IoU with it, so the
IoU ≥ 0.5 criterion of Table 4 can be checked by eye. ``elope evaluate --examples N`` writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.ops import box_iou

from elope.nn.model import ELoPE
from elope.runs.loaded import LoadedRun, load_run
from elope.tasks.visualize import ExampleItem, save_example_sheet

__all__ = ["localization_examples"]


def _iou(box: torch.Tensor, gt: torch.Tensor) -> str:
    if not torch.isfinite(gt).all():
        return ""
    return f", IoU {float(box_iou(box[None], gt[None])[0, 0]):.2f}"


def localization_examples(
    run_dir: str | Path,
    path: str | Path,
    count: int = 8,
    *,
    split: str = "test",
    device: str | torch.device = "cpu",
    tau: float | None = None,
) -> Path:
    """Write the example sheet of ``run_dir``'s model on ``count`` images of ``split`` to ``path`` (PNG).

    The images are spread evenly over the split (the same ones every time). Without a localization
    module only the mean-feature-map panels are drawn. ``tau`` replaces the run's τ (the run is loaded with
    it). Returns ``path``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    run = load_run(run_dir, device, tau=tau)
    ds, _, _ = run.load_dataset(split)
    model = run.model
    try:
        teacher = run.load_teacher()
    except FileNotFoundError:
        teacher = model
    picks = sorted({round(i * (len(ds) - 1) / max(count - 1, 1)) for i in range(min(count, len(ds)))})
    # inference mode only once the models are built: timm backbones probe themselves with a gradient
    with torch.inference_mode():
        items = _draw_items(run, teacher, ds, picks)
    return save_example_sheet(path, items, ncols=4)


def _draw_items(run: LoadedRun, teacher: ELoPE, ds: Any, picks: list[int]) -> list[ExampleItem]:
    model = run.model
    items: list[ExampleItem] = []
    for index in picks:
        image, label, gt = ds[index]
        gt = torch.as_tensor(gt, dtype=torch.float32).reshape(4)
        x = image[None].to(run.device)
        display = dict(image=image, gt_box=gt)
        boxes, heat = teacher.mean_map(x)
        box = boxes[0].cpu()
        name = str(run.classes[int(label)])
        items.append(
            ExampleItem(
                **display, heatmap=heat[0].cpu(), box=box, title=f"{name[:24]}\nmean map{_iou(box, gt)}"
            )
        )
        if model.localizer is not None:
            pred = model.predict(x)
            box = pred.boxes[0].cpu()
            title = f"predicted {str(run.classes[int(pred.classes[0, 0])])[:14]}\nmodule{_iou(box, gt)}"
            items.append(ExampleItem(**display, heatmap=pred.heatmaps[0].float().cpu(), box=box, title=title))
    return items
