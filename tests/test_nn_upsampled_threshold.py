"""The upsampled box step without the upsampled map (elope.nn.upsampled_threshold, issue 17): the same
boxes as thresholding ``F.interpolate``'s whole bilinear map, which these tests compute as the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from elope.nn.localization import _minmax, heatmap_to_box, peak_region
from elope.nn.upsampled_threshold import bilinear_at, linear_source, nearest_source, run_ends, upsampled_hits

SHAPES = [
    (7, 7, 224, 224),
    (14, 14, 448, 448),
    (14, 14, 896, 896),
    (7, 7, 500, 333),
    (5, 9, 97, 300),
    (3, 3, 10, 7),
]


def reference_hits(maps, tau, size, region):
    """Threshold the whole upsampled map (the definition)."""
    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    normalised, contrast = _minmax(up)
    mask = normalised > tau
    if region is not None:
        near = F.max_pool2d(region[:, None].float(), kernel_size=3, stride=1, padding=1)
        mask = mask & (F.interpolate(near, size=size, mode="nearest")[:, 0] > 0)
    return mask.any(dim=2), mask.any(dim=1), contrast


def reference_boxes(maps, tau, size, rule):
    normalised, _ = _minmax(maps)
    region = peak_region(normalised, normalised > tau) if rule == "peak" else None
    rows, cols, contrast = reference_hits(maps, tau, size, region)
    boxes = []
    for r, c, ok in zip(rows, cols, contrast, strict=True):
        if not ok or not r.any():
            boxes.append([0.0, 0.0, float(size[1]), float(size[0])])
            continue
        ys, xs = r.nonzero()[:, 0], c.nonzero()[:, 0]
        boxes.append([float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)])
    return torch.tensor(boxes)


@pytest.mark.parametrize("h, w, height, width", SHAPES)
def test_source_indices_are_interpolates(h, w, height, width):
    """linear_source / nearest_source reproduce F.interpolate's weights on one-hot maps."""
    low, high, frac = linear_source(w, width)
    basis = torch.eye(w)[:, None, None, :]  # (w, 1, 1, w): row k is the k-th cell alone
    up = F.interpolate(basis, size=(1, width), mode="bilinear", align_corners=False)[:, 0, 0]  # (w, W)
    for i in range(width):
        expected = torch.zeros(w)
        expected[low[i]] += 1.0 - frac[i]
        expected[high[i]] += frac[i]
        assert torch.allclose(up[:, i], expected, atol=1e-6), i
    near = F.interpolate(basis, size=(1, width), mode="nearest")[:, 0, 0]
    assert near.argmax(dim=0).tolist() == nearest_source(w, width)


def test_run_ends_mark_every_change():
    ends = run_ends(7, 224, False)
    low, _, _ = linear_source(7, 224)
    assert ends[0] == 0 and ends[-1] == 223
    for i in range(1, 224):
        if low[i] != low[i - 1]:
            assert i - 1 in ends and i in ends
    # blocks add the nearest mode's cell changes, which fall mid-way between the bilinear ones
    assert set(ends) < set(run_ends(7, 224, True))
    assert len(run_ends(14, 896, True)) <= 4 * 14


@pytest.mark.parametrize("h, w, height, width", SHAPES)
def test_bilinear_at_is_the_upsampled_map(h, w, height, width):
    torch.manual_seed(h * width)
    maps = torch.randn(4, h, w) * 5
    up = F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    rows, cols = [0, height // 3, height - 1], list(range(0, width, 5))
    got = bilinear_at(maps, (height, width), rows, cols)
    assert torch.allclose(got, up[:, rows][:, :, cols], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("h, w, height, width", SHAPES)
def test_hits_are_those_of_the_whole_upsampled_map(h, w, height, width):
    torch.manual_seed(height + width)
    # smooth blobs, noise, and maps whose extreme lies on an edge cell
    blobs = torch.randn(32, 1, h + 4, w + 4)
    blobs = F.avg_pool2d(blobs, 5, stride=1)[:, 0]
    maps = torch.cat([blobs, torch.randn(32, h, w) * torch.rand(32, 1, 1) * 4])
    maps[::7, 0, 0] += 6.0
    maps[1::7, -1, :] -= 6.0
    for tau in (0.2, 0.3, 0.6, 0.8, 0.9):
        normalised, _ = _minmax(maps)
        for region in (None, peak_region(normalised, normalised > tau)):
            expected = reference_hits(maps, tau, (height, width), region)
            got = upsampled_hits(maps, tau, (height, width), region)
            for e, g in zip(expected, got, strict=True):
                assert torch.equal(e, g), (tau, region is None)


@pytest.mark.parametrize("rule", ["all", "peak"])
def test_heatmap_to_box_upsampled_equals_the_reference(rule):
    torch.manual_seed(17)
    maps = F.avg_pool2d(torch.randn(64, 1, 18, 18), 5, stride=1)  # (64, 1, 14, 14)
    maps[:3] = 0.0  # constant maps: the whole image
    for tau in (0.3, 0.6, 0.8):
        got = heatmap_to_box(maps, tau, (896, 640), upsample=True, rule=rule)
        assert torch.equal(got, reference_boxes(maps[:, 0], tau, (896, 640), rule)), tau
    assert got[0].tolist() == [0.0, 0.0, 640.0, 896.0]


def test_a_peak_between_pixel_centres_keeps_its_box():
    """One hot cell: the upsampled map's maximum lies at the pixels nearest the cell's centre, not on any
    fixed stride of pixels; a coarse sample of the map would move the box."""
    maps = torch.zeros(1, 7, 7)
    maps[0, 3, 4] = 1.0
    for tau in (0.5, 0.9, 0.99):
        got = heatmap_to_box(maps, tau, 224, upsample=True)
        assert torch.equal(got, reference_boxes(maps, tau, (224, 224), "all"))
    box = heatmap_to_box(maps, 0.99, 224, upsample=True)[0]
    assert 0 < box[2] - box[0] < 8 and 0 < box[3] - box[1] < 8  # a few pixels round the cell's centre
