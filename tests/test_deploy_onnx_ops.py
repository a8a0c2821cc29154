"""The faster ONNX forms of elope.deploy.onnx_ops against what they replace: the antialiased resize's
weights against ``F.interpolate``, :func:`separable_roi_align` against ``torchvision.ops.roi_align`` (random,
whole-image, degenerate and border boxes, 2-4 samples per pixel), :func:`reachable_region` against
``peak_region`` (random maps, a one-cell-wide serpentine path of 104 cells), and an
exported pipeline that uses them all against PyTorch in onnxruntime."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from elope.deploy.onnx_ops import antialias_weights, reachable_region, separable_roi_align
from elope.nn.localization import peak_region
from elope.spec import ModelSpec


@pytest.mark.parametrize(
    ("size_in", "size_out"), [(448, 64), (896, 64), (96, 64), (64, 64), (50, 64), (101, 7)]
)
def test_antialias_weights_are_interpolates(size_in, size_out):
    x = torch.randn(2, 3, size_in, size_in + 3, generator=torch.Generator().manual_seed(size_in))
    w_y = torch.from_numpy(antialias_weights(size_in, size_out))
    w_x = torch.from_numpy(antialias_weights(size_in + 3, size_out))
    ref = F.interpolate(x, size=(size_out, size_out), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(w_y @ x @ w_x.T, ref, atol=2e-6, rtol=0)


def _boxes(n: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    corner = torch.rand(batch, 2, generator=generator) * n
    boxes = torch.cat([corner, (corner + torch.rand(batch, 2, generator=generator) * n).clamp(max=n)], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, n, n])  # the whole image
    boxes[1] = torch.tensor([3.0, 5.0, 3.0, 9.0])  # zero width
    boxes[2] = torch.tensor([n - 0.3, 0.0, n, 0.2])  # a sliver in a corner
    boxes[3] = torch.tensor([0.0, n / 3, n / 2, n])  # on two borders
    return boxes


@pytest.mark.parametrize(("n", "out"), [(128, 64), (896, 448), (193, 64), (130, 40)])
def test_separable_roi_align_is_roi_align(n, out, monkeypatch):
    monkeypatch.setattr("elope.deploy.onnx_ops.SEPARABLE_FROM", 0)  # the gathers at every size
    g = torch.Generator().manual_seed(n)
    images = torch.randn(8, 3, n, n + 5, generator=g)
    rois = torch.cat([torch.arange(8.0)[:, None], _boxes(n, 8, g)], dim=1)
    ref = roi_align(images, rois, (out, out), 1.0, -1, True)
    torch.testing.assert_close(
        separable_roi_align(images, rois, (out, out), 1.0, -1, True), ref, atol=1e-5, rtol=0
    )


def test_separable_roi_align_keeps_roi_align_for_one_sample_per_pixel(monkeypatch):
    monkeypatch.setattr("elope.deploy.onnx_ops.SEPARABLE_FROM", 0)
    images = torch.randn(2, 3, 64, 64)
    rois = torch.tensor([[0.0, 1.0, 2.0, 50.0, 60.0], [1.0, 0.0, 0.0, 64.0, 64.0]])
    assert torch.equal(
        separable_roi_align(images, rois, (64, 64), 1.0, -1, True), roi_align(images, rois, 64, 1.0, -1, True)
    )


def _serpentine(size: int = 14) -> torch.Tensor:
    """A one-cell-wide path winding through every other row (104 cells on 14×14): from one end, 103 steps
    reach the other, more than 6 squarings (64 steps) of the neighbourhood cover."""
    grid = torch.zeros(size, size, dtype=torch.bool)
    grid[0::2] = True
    for row in range(1, size, 2):
        grid[row, size - 1 if row % 4 == 1 else 0] = True
    grid[size - 1] = False  # 14 rows: the last odd row would lead nowhere
    return grid


def test_reachable_region_is_peak_region():
    g = torch.Generator().manual_seed(0)
    maps = F.avg_pool2d(torch.rand(64, 1, 18, 18, generator=g), 5, stride=1)[:, 0]  # (64, 14, 14), blobs
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (
        maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True)
    )
    for tau in (0.2, 0.5, 0.8):
        mask = maps > tau
        assert torch.equal(reachable_region(maps, mask), peak_region(maps, mask))
    path = _serpentine()
    values = torch.rand(14, 14, generator=g) * 0.1
    values[0, 0] = 1.0  # the peak at the path's start
    region = peak_region(values[None], path[None])
    assert int(region.sum()) == int(path.sum()) == 104
    assert torch.equal(reachable_region(values[None], path[None]), region)
    disconnected = path.clone()
    disconnected[0, 5] = False  # cut the path: the far part is no longer reachable
    assert torch.equal(
        reachable_region(values[None], disconnected[None]), peak_region(values[None], disconnected[None])
    )
    assert reachable_region(values[None], disconnected[None]).sum() < region.sum()


def test_exported_pipeline_uses_them_and_equals_pytorch(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from elope.deploy.check import check_export
    from elope.deploy.export import export_model
    from elope.nn.model import ELoPE

    torch.manual_seed(0)
    model = ELoPE(
        "resnet18", 3, embedding_dim=16, k=2, spec=ModelSpec(image_size=64, tau=0.3, box_rule="peak")
    ).eval()
    with torch.no_grad():
        model.localizer.head.weight.zero_()
        model.localizer.head.weight[0, 0, 1, 1] = 1.0  # blobby heatmaps: boxes that are not the whole image
    at_640 = model.spec.replace(
        crop_source=640, mean=(0.5,) * 3, std=(0.25,) * 3
    )  # 640 -> 64 px: a shrink by 10
    model.spec = at_640
    path = export_model(model, tmp_path / "m.onnx", classes=list("abc"), batch=None)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "RoiAlign" not in ops and "Resize" not in ops and ops.count("MaxPool") < 10

    def ops_at(size: int) -> set[str]:
        model.spec = at_640.replace(crop_source=size)
        kept = export_model(model, tmp_path / f"{size}.onnx", classes=list("abc"), batch=None)
        model.spec = at_640
        return {node.op_type for node in onnx.load(str(kept)).graph.node}

    assert "RoiAlign" in ops_at(64)  # one sample per output pixel: the native kernel
    assert "Resize" in ops_at(96)  # a shrink by 1.5: the native kernel
    for report in check_export(model, path):
        assert report["top1_equal"] and report["boxes_max_px"] <= 0.5 and report["scores_max_rel"] < 1e-4
