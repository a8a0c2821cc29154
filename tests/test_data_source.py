"""The uint8 crop source (elope.data.source): same draws and same colours as the float pipeline."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import roi_align

from elope.data import eval_transform, train_transform
from elope.data.source import SourceCollate, render_sources
from elope.data.transforms import CapSize, DrawColour, SourceImage, ToNormalizedTensor


def _photo(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth uint8 image with structure at every scale (gradients plus a few blocks)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    image = torch.stack([200 * x * y + 20, 150 * (1 - x) + 50 * y, 100 + 80 * torch.sin(6 * x + 3 * y)])
    for _ in range(4):
        y0, x0 = (
            int(torch.randint(0, height - 8, (1,), generator=g)),
            int(torch.randint(0, width - 8, (1,), generator=g)),
        )
        image[:, y0 : y0 + 8, x0 : x0 + 8] = torch.rand(3, 1, 1, generator=g) * 255
    return image.round().clamp(0, 255).to(torch.uint8)


def _render_one(item: SourceImage, box: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, _, boxes = SourceCollate(size)([(item, 0, box)])
    return render_sources(batch, size)[0], boxes[0]


@pytest.mark.parametrize("jitter,lighting", [(0.0, 0.0), (0.4, 0.1)])
def test_colour_map_on_the_device_equals_the_float_pipeline(jitter: float, lighting: float) -> None:
    """Same seed, same image at the source size: DrawColour + render == ToNormalizedTensor, draw for draw."""
    image = _photo(48, 48)
    torch.manual_seed(3)
    expected = ToNormalizedTensor(jitter=jitter, lighting=lighting)(image)
    torch.manual_seed(3)
    item = DrawColour(jitter=jitter, lighting=lighting)(image)
    got, _ = _render_one(item, torch.tensor([0.0, 0.0, 48.0, 48.0]), 48)
    torch.testing.assert_close(got, expected.as_subclass(torch.Tensor), atol=1e-4, rtol=1e-4)


def test_upsampled_source_matches_the_evaluation_resize() -> None:
    """An original smaller than the source is enlarged bilinearly, as PIL's resize does for evaluation."""
    image = _photo(30, 40)
    expected = eval_transform(64)(PIL.Image.fromarray(image.permute(1, 2, 0).numpy()))
    item = DrawColour()(CapSize(64)(PIL.Image.fromarray(image.permute(1, 2, 0).numpy())))
    got, _ = _render_one(item, torch.tensor([0.0, 0.0, 40.0, 30.0]), 64)
    # PIL resizes in fixed point and rounds to uint8: within one grey level (/ std 0.225 once normalised)
    difference = (got - expected).abs() * 0.225 * 255
    assert difference.max() < 1.01 and difference.mean() < 0.3


def test_large_originals_are_capped_per_side_and_boxes_follow() -> None:
    image = PIL.Image.fromarray(_photo(100, 300).permute(1, 2, 0).numpy())
    box = tv_tensors.BoundingBoxes(
        torch.tensor([[30.0, 10.0, 150.0, 90.0]]), format="XYXY", canvas_size=(100, 300)
    )
    item, moved = DrawColour()(*CapSize(64)(image, box))
    assert tuple(item.pixels.shape) == (3, 64, 64)  # width 300 -> 64, height 100 -> 64; never enlarged
    small = DrawColour()(CapSize(64)(PIL.Image.fromarray(_photo(40, 90).permute(1, 2, 0).numpy())))
    assert tuple(small.pixels.shape) == (3, 40, 64)
    _, scaled = _render_one(item, moved.as_subclass(torch.Tensor).reshape(4), 64)
    torch.testing.assert_close(
        scaled, torch.tensor([30 * 64 / 300, 10 * 64 / 100, 150 * 64 / 300, 90 * 64 / 100])
    )


def test_padding_never_leaks_into_a_smaller_image() -> None:
    """Rendered in a batch with a larger image (so padded), an image renders as from its own unpadded
    tensor: bilinear samples at the border must not mix in the padding."""
    colour = DrawColour(jitter=0.3, lighting=0.1)
    torch.manual_seed(0)
    small, large = colour(_photo(20, 28, seed=1)), colour(_photo(50, 45, seed=2))
    nan = torch.full((4,), float("nan"))
    batch, _, _ = SourceCollate(32)([(small, 0, nan), (large, 1, nan)])
    together = render_sources(batch, 32)
    resized = roi_align(
        small.pixels.float()[None], [torch.tensor([[0.0, 0.0, 28.0, 20.0]])], (32, 32), 1.0, -1, True
    )[0]
    alone = torch.einsum("ij,jhw->ihw", small.colour[:, :3], resized) + small.colour[:, 3, None, None]
    assert batch.pixels.shape[-2:] == (51, 46) and batch.pixels.shape[0] == 2
    torch.testing.assert_close(together[0], alone, atol=1e-4, rtol=1e-4)


def test_drawing_consumes_the_same_random_numbers_as_the_float_pipeline() -> None:
    """Switching a stage to the uint8 source must not shift any later draw (exact resume, DDP)."""
    image = _photo(32, 32)
    torch.manual_seed(5)
    train_transform(32, source=True)(PIL.Image.fromarray(image.permute(1, 2, 0).numpy()))
    after_source = torch.rand(1)
    torch.manual_seed(5)
    train_transform(32)(PIL.Image.fromarray(image.permute(1, 2, 0).numpy()))
    assert torch.equal(after_source, torch.rand(1))
