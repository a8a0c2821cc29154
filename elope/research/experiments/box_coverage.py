"""How much of the object the boxes of a trained run keep, and the best IoU a box of whole feature-map cells
can reach (docs/results.md, "Localization (Table 4)").

    python -m elope.research.experiments.box_coverage RUN [RUN ...]

For every test image of each run's dataset: the fraction of the ground-truth box inside the localization
module's box and inside the mean-feature-map box, and the box's share of the image; then, from the
ground-truth boxes alone, the share of test images for which some box made of whole cells of an n×n grid
reaches IoU >= 0.5 with the ground truth (n = the last feature map's side, 8 and 14).
"""

from __future__ import annotations

import itertools
import statistics
import sys

import torch
from torchvision.ops import box_iou

from elope.nn.localization import heatmap_to_box, mean_heatmap
from elope.tasks.evaluate import load_run


def _inside(box: torch.Tensor, gt: torch.Tensor) -> float:
    low, high = torch.maximum(box[:2], gt[:2]), torch.minimum(box[2:], gt[2:])
    inter = (high - low).clamp(min=0).prod()
    return float(inter / (gt[2:] - gt[:2]).prod())


def _grid_bound(gts: torch.Tensor, size: int, cells: int) -> float:
    edges = [size * k / cells for k in range(cells + 1)]
    spans = list(itertools.combinations(edges, 2))
    boxes = torch.tensor([[x1, y1, x2, y2] for (x1, x2), (y1, y2) in itertools.product(spans, spans)])
    return float((box_iou(gts, boxes).amax(dim=1) >= 0.5).float().mean())


@torch.inference_mode()
def main(runs: list[str]) -> None:
    for run_dir in runs:
        run = load_run(run_dir)
        ds, _, _ = run.load_dataset("test")
        stats: dict[str, list[tuple[float, float]]] = {"module": [], "mean map": []}
        gts = []
        for index in range(len(ds)):
            image, _, gt = ds[index]
            x, gt = image[None], torch.as_tensor(gt, dtype=torch.float32).reshape(4)
            gts.append(gt)
            fmap = run.model.forward_features(x)
            boxes = {"mean map": heatmap_to_box(mean_heatmap(fmap), run.spec.tau, x.shape[-2:])[0]}
            if run.model.localizer is not None:
                boxes["module"] = run.model.localize(x)[0][0]
            for kind, box in boxes.items():
                stats[kind].append((_inside(box, gt), float((box[2:] - box[:2]).prod()) / x.shape[-1] ** 2))
        side = fmap.shape[-1]
        print(f"{run_dir}: {len(ds)} test images, last feature map {side}x{side}")
        for kind, values in stats.items():
            if not values:
                continue
            inside = [v for v, _ in values]
            print(
                f"  {kind:<8}: object >= 90 % inside the box {100 * statistics.fmean(v >= 0.9 for v in inside):5.1f} %, "
                f">= 50 % inside {100 * statistics.fmean(v >= 0.5 for v in inside):5.1f} %, "
                f"median box {100 * statistics.median(a for _, a in values):3.0f} % of the image"
            )
        bounds = ", ".join(
            f"{n}x{n} {100 * _grid_bound(torch.stack(gts), run.spec.image_size, n):.1f} %"
            for n in (side, 8, 14)
        )
        print(f"  best box of whole cells with IoU >= 0.5: {bounds}")


if __name__ == "__main__":
    main(sys.argv[1:])
