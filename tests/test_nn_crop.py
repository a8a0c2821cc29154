"""crop_and_resize's grid_sample path (elope.nn.crop.resample_boxes, issue 17): the crop roi_align cuts,
where each output pixel is one sample; roi_align itself where a crop averages several."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from elope.nn import crop as crop_module
from elope.nn.crop import crop_and_resize, resample_boxes


def reference(images, boxes, size):
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], dim=1)
    return roi_align(images, rois, (size, size), 1.0, -1, True)


def boxes_for(height, width):
    return torch.tensor(
        [
            [0.0, 0.0, width, height],  # the whole image
            [10.3, 20.7, width * 0.6, height * 0.9],  # fractional edges
            [-3.0, -2.0, 40.0, 50.0],  # beyond the top-left corner
            [width - 20.0, height - 30.0, width + 5.0, height + 0.5],  # beyond the bottom-right
            [5.0, 5.0, 5.0, 30.0],  # empty: roi_align gives zeros
            [30.0, 40.0, 30.5, 41.0],  # under a pixel
        ]
    )


@pytest.mark.parametrize(
    "height, width, size", [(448, 448, 448), (224, 300, 320), (64, 64, 64), (50, 40, 64)]
)
def test_resample_boxes_is_roi_align_with_one_sample(height, width, size):
    torch.manual_seed(height + width)
    images = torch.randn(6, 3, height, width)
    boxes = boxes_for(height, width)
    expected = reference(images, boxes, size)
    torch.testing.assert_close(resample_boxes(images, boxes, size), expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(crop_and_resize(images, boxes, size), expected, atol=1e-3, rtol=0)
    assert resample_boxes(images, boxes, size)[4].abs().max() == 0  # the empty box, as roi_align


def test_crop_and_resize_picks_the_path_by_shape(monkeypatch):
    """One sample per pixel (source ≤ output) → grid_sample; a larger source → roi_align, which averages
    ceil(box / size) samples per pixel; a traced or compiled graph → roi_align."""
    calls = []
    original = crop_module.resample_boxes
    monkeypatch.setattr(crop_module, "resample_boxes", lambda *a: calls.append("grid") or original(*a))
    images = torch.randn(2, 3, 96, 96)
    boxes = torch.tensor([[0.0, 0.0, 96.0, 96.0], [10.0, 5.0, 70.0, 90.0]])
    crop_and_resize(images, boxes, 96)
    assert calls == ["grid"]
    big = crop_and_resize(images, boxes, 48)  # two samples per pixel on the whole image
    assert calls == ["grid"]
    torch.testing.assert_close(big, reference(images, boxes, 48))
    torch.jit.trace(lambda x, b: crop_and_resize(x, b, 96), (images, boxes), check_trace=False)
    assert calls == ["grid"]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # a compiled graph → roi_align too
    crop_and_resize(images, boxes, 96)
    assert calls == ["grid"]
