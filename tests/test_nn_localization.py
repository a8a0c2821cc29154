"""Localization module, mean heatmap, heatmap -> box and the batched crop (Sec. 5)."""

import math

import pytest
import torch
import torch.nn.functional as F

from elope import ELoPE, LocalizationModule, crop_and_resize, heatmap_to_box, mean_heatmap
from elope.spec import ModelSpec


def block_heatmap(rows, cols, size=14, value=1.0):
    heat = torch.zeros(1, 1, size, size)
    heat[0, 0, rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = value
    return heat


def test_block_heatmap_gives_cell_edges_in_pixels():
    # rows 3..6, cols 5..9 of a 14x14 map on a 448x448 image: cells are 32 pixels wide
    box = heatmap_to_box(block_heatmap((3, 6), (5, 9)), tau=0.3, frame=448)
    torch.testing.assert_close(box, torch.tensor([[160.0, 96.0, 320.0, 224.0]]))


def test_non_square_image_and_batch():
    heat = torch.cat([block_heatmap((0, 0), (0, 0)), block_heatmap((13, 13), (2, 3))])
    boxes = heatmap_to_box(heat, tau=0.5, frame=(280, 560))  # cells: 20 px high, 40 px wide
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 40.0, 20.0], [80.0, 260.0, 160.0, 280.0]]))


def test_threshold_is_strict_and_min_max_normalised():
    heat = torch.zeros(1, 4, 4) + 10.0  # an offset the normalisation removes
    heat[0, 1, 1] = 20.0  # -> 1.0
    heat[0, 2, 3] = 13.0  # -> 0.3 exactly: not above tau = 0.3
    heat[0, 3, 0] = 13.5  # -> 0.35: above
    box = heatmap_to_box(heat, tau=0.3, frame=4)
    torch.testing.assert_close(box, torch.tensor([[0.0, 1.0, 2.0, 4.0]]))


@pytest.mark.parametrize("fill", [0.0, 5.0, math.nan, math.inf])
def test_degenerate_heatmaps_give_the_whole_image(fill):
    heat = torch.full((2, 1, 14, 14), 5.0)
    heat[1, 0, 0, 0] = fill
    boxes = heatmap_to_box(heat, tau=0.3, frame=(100, 200))
    if fill == 0.0:  # a real single-cell minimum: everything else is above tau
        torch.testing.assert_close(boxes[1], torch.tensor([0.0, 0.0, 200.0, 100.0]))
    torch.testing.assert_close(boxes[0], torch.tensor([0.0, 0.0, 200.0, 100.0]))
    torch.testing.assert_close(boxes[1], torch.tensor([0.0, 0.0, 200.0, 100.0]))


def test_invalid_tau_is_refused_by_the_spec_not_per_batch():
    """τ is checked once, when a spec is made (issue 27); heatmap_to_box, run on every batch, trusts it."""
    with pytest.raises(ValueError, match="tau"):
        ModelSpec(tau=1.0)
    boxes = heatmap_to_box(torch.rand(1, 1, 4, 4), tau=1.0, frame=8)  # no cell above: the whole image
    assert boxes.tolist() == [[0.0, 0.0, 8.0, 8.0]]


def test_crop_and_resize_is_exact_on_pixel_grids():
    images = torch.randn(2, 3, 8, 8)
    full = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    torch.testing.assert_close(crop_and_resize(images, full, 8), images)
    boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 4.0, 4.0, 8.0]])
    crops = crop_and_resize(images, boxes, 4)
    torch.testing.assert_close(crops[0], images[0, :, 2:6, 2:6])
    torch.testing.assert_close(crops[1], images[1, :, 4:8, 0:4])
    # a 2x downscale averages the 2x2 blocks
    torch.testing.assert_close(crop_and_resize(images, full, 4), torch.nn.functional.avg_pool2d(images, 2))


def test_localization_module_shapes_and_size_resnet50():
    model = ELoPE("resnet50", 10)
    loc = model.localizer
    assert isinstance(loc, LocalizationModule)
    assert loc(torch.randn(2, 3, 448, 448)).shape == (2, 1, 14, 14)
    assert loc(torch.randn(1, 3, 300, 200)).shape == (1, 1, 14, 14)  # any input is resized to 64x64
    params = sum(p.numel() for p in loc.parameters())
    assert 210_000 < params < 240_000  # "about 225k"; the paper says 220000
    assert loc.head.padding == (0, 0) and loc.head.out_channels == 1


def test_mean_heatmap():
    features = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(mean_heatmap(features), features.mean(dim=1, keepdim=True))
    assert mean_heatmap(features).shape == (2, 1, 3, 3)


def test_heatmap_upsampling_before_the_threshold_is_an_option():
    """Default: whole cells (the authors' release, utils.lua get_bb); upsample=True: the bilinear map's
    pixels above τ."""
    heat = torch.tensor([[[[0.0, 0.0, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 0.0]]]])
    assert heatmap_to_box(heat, 0.3, 12).tolist() == [[0.0, 4.0, 8.0, 8.0]]  # cells (1, 0) and (1, 1)
    fine = F.interpolate(heat, size=(12, 12), mode="bilinear", align_corners=False)[0, 0]
    inside = (fine / fine.max()) > 0.3
    rows, cols = inside.any(1).nonzero().flatten(), inside.any(0).nonzero().flatten()
    expected = [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
    assert heatmap_to_box(heat, 0.3, 12, upsample=True).tolist() == [expected]
    assert expected != [0.0, 4.0, 8.0, 8.0]


# --- the box rule: every cell above tau (paper) or the connected region around the peak (ours) ----------


def _scipy_peak_box(heat: torch.Tensor, tau: float) -> list[float]:
    """The peak rule written with scipy's connected components (8-connectivity), cells as pixels."""
    from scipy import ndimage

    m = heat[0, 0].double()
    normalised = (m - m.min()) / (m.max() - m.min())
    labels, _ = ndimage.label((normalised > tau).numpy(), structure=[[1, 1, 1]] * 3)
    peak = divmod(int(normalised.flatten().argmax()), m.shape[1])
    rows, cols = (labels == labels[peak]).nonzero()
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def test_peak_rule_keeps_the_region_of_the_peak_and_drops_a_decoy():
    heat = torch.zeros(1, 1, 14, 14)
    heat[0, 0, 2:5, 2:6] = 1.0  # the object, holding the peak
    heat[0, 0, 3, 3] = 1.2
    heat[0, 0, 10:12, 9:13] = 0.9  # a decoy, not touching it
    assert heatmap_to_box(heat, 0.3, 14, rule="all").tolist() == [[2.0, 2.0, 13.0, 12.0]]
    assert heatmap_to_box(heat, 0.3, 14, rule="peak").tolist() == [[2.0, 2.0, 6.0, 5.0]]
    heat[0, 0, 5:10, 6:9] = 0.5  # a bridge of cells above tau: one region again
    assert heatmap_to_box(heat, 0.3, 14, rule="peak").tolist() == [[2.0, 2.0, 13.0, 12.0]]


def test_peak_rule_follows_diagonals_and_long_snakes_like_scipy():
    # a snake that turns back on itself: its far end is ~40 steps from the peak (beyond rows + cols)
    snake = torch.zeros(1, 1, 14, 14)
    for r in range(0, 14, 4):
        snake[0, 0, r, 1:13] = 1.0
    for r, c in ((1, 12), (2, 12), (3, 12), (5, 1), (6, 1), (7, 1), (9, 12), (10, 12), (11, 12)):
        snake[0, 0, r, c] = 1.0
    snake[0, 0, 0, 1] = 2.0  # the peak at one end
    snake[0, 0, 6, 13] = 1.5  # an isolated cell touching nothing
    assert heatmap_to_box(snake, 0.3, 14, rule="peak").tolist() == [_scipy_peak_box(snake, 0.3)]
    assert heatmap_to_box(snake, 0.3, 14, rule="peak").tolist() == [[1.0, 0.0, 13.0, 13.0]]
    assert heatmap_to_box(snake, 0.3, 14, rule="all").tolist() == [[1.0, 0.0, 14.0, 13.0]]
    diagonal = torch.zeros(1, 1, 6, 6)
    diagonal[0, 0, range(5), range(5)] = torch.tensor([3.0, 1.0, 1.0, 1.0, 1.0])  # corners touch only
    assert heatmap_to_box(diagonal, 0.3, 6, rule="peak").tolist() == [[0.0, 0.0, 5.0, 5.0]]


@pytest.mark.parametrize("seed", range(20))
def test_peak_rule_equals_scipy_on_random_maps(seed):
    torch.manual_seed(seed)
    heat = F.avg_pool2d(torch.rand(1, 1, 16, 16), 3, stride=1)  # 14x14, smooth blobs
    for tau in (0.3, 0.5, 0.7):
        assert heatmap_to_box(heat, tau, 14, rule="peak").tolist() == [_scipy_peak_box(heat, tau)]


def test_peak_rule_in_a_batch_and_with_upsampling():
    heat = torch.zeros(2, 1, 7, 7)
    heat[0, 0, 1:3, 1:3] = torch.tensor([[0.9, 0.8], [0.8, 1.0]])
    heat[0, 0, 5, 5] = 0.95  # a second blob
    heat[1, 0, 4:6, 0:2] = 1.0
    boxes = heatmap_to_box(heat, 0.5, 70, rule="peak")
    assert boxes.tolist() == [[10.0, 10.0, 30.0, 30.0], [0.0, 40.0, 20.0, 60.0]]
    up = heatmap_to_box(heat, 0.5, 70, rule="peak", upsample=True)
    everything = heatmap_to_box(heat, 0.5, 70, rule="all", upsample=True)
    # upsampled: pixels within one cell of the peak's region; the second blob stays out of the first box
    assert up[0, 2] < 45 and everything[0, 2] > 50
    assert (up[:, :2] >= boxes[:, :2] - 10).all() and (up[:, 2:] <= boxes[:, 2:] + 10).all()
    assert torch.equal(up[1], everything[1])


def test_unknown_box_rule():
    with pytest.raises(ValueError, match="box rule"):
        heatmap_to_box(torch.rand(1, 1, 4, 4), 0.3, 8, rule="largest")
    with pytest.raises(ValueError, match="box_rule"):
        ELoPE("resnet18", 3, spec=ModelSpec(box_rule="largest"))
