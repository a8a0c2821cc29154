"""elope.tasks.visualize: heatmap overlays (Figs. 2/4) and box drawings (Fig. 6), PNG output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle
from PIL import Image

from elope.tasks.visualize import (
    BOX_COLOR,
    GT_BOX_COLOR,
    ExampleItem,
    overlay_heatmap,
    save_example_sheet,
    save_prediction_figure,
    to_display_image,
    upsample_heatmap,
)


def _image(w: int = 80, h: int = 48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_upsample_heatmap_is_min_max_normalised_and_sized():
    hm = torch.arange(16.0).view(1, 4, 4) * 3 - 7
    up = upsample_heatmap(hm, 20, 30)
    assert up.shape == (20, 30)
    assert up.min() == pytest.approx(0.0) and up.max() == pytest.approx(1.0)
    # the hot corner of the heatmap (bottom right) stays the hot corner
    assert up[-1, -1] == pytest.approx(1.0) and up[0, 0] == pytest.approx(0.0)
    assert np.all(upsample_heatmap(torch.full((3, 3), 5.0), 6, 6) == 0.0)
    with pytest.raises(ValueError, match="heatmap"):
        upsample_heatmap(torch.zeros(2, 3, 3), 6, 6)


def test_to_display_image_undoes_normalisation():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = torch.rand(3, 5, 7)
    normalised = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    out = to_display_image(normalised, mean, std)
    assert out.shape == (5, 7, 3)
    np.testing.assert_allclose(out, x.permute(1, 2, 0).numpy(), atol=1e-5)
    assert to_display_image(_image(7, 5)).shape == (5, 7, 3)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_display_image(torch.zeros(5, 7))


def test_overlay_draws_predicted_and_ground_truth_boxes():
    fig = overlay_heatmap(_image(), torch.rand(1, 14, 14), [10, 5, 60, 40], gt_box=[12, 6, 50, 44], title="t")
    ax = fig.axes[0]
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == 2
    by_label = {r.get_label(): r for r in rects}
    pred, gt = by_label["predicted"], by_label["ground truth"]
    assert pred.get_xy() == (10.0, 5.0) and pred.get_width() == 50.0 and pred.get_height() == 35.0
    assert np.allclose(pred.get_edgecolor()[:3], [0, 1, 0]) and BOX_COLOR != GT_BOX_COLOR
    assert np.allclose(gt.get_edgecolor()[:3], [1, 0, 1])
    assert len(ax.images) == 2  # the image and the heatmap over it
    assert ax.get_title() == "t"


def test_missing_boxes_and_heatmap_are_not_drawn():
    fig = overlay_heatmap(_image(), None, None, gt_box=[float("nan")] * 4)
    assert len(fig.axes[0].patches) == 0 and len(fig.axes[0].images) == 1


def test_save_prediction_figure_writes_png(tmp_path):
    path = save_prediction_figure(
        tmp_path / "sub" / "a.png", _image(80, 48), torch.rand(14, 14), [1, 2, 30, 40]
    )
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert w > h  # aspect ratio of the 80×48 image kept (landscape)


def test_save_example_sheet_grid(tmp_path):
    items = [ExampleItem(_image(), box=[1, 1, 20, 20], title=f"{i}") for i in range(4)]
    items.append({"image": _image(), "box": [0, 0, 5, 5], "heatmap": torch.rand(14, 14)})
    path = save_example_sheet(tmp_path / "sheet.png", items, ncols=3, cell_inches=2.0, dpi=50)
    with Image.open(path) as im:
        assert im.size == (3 * 100, 2 * 100)  # 3 columns × 2 rows of 2-inch cells at 50 dpi
    with pytest.raises(ValueError, match="at least one"):
        save_example_sheet(tmp_path / "x.png", [])
