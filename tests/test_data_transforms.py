"""Transforms of the paper (Sec. 6): sizes, normalisation, lighting, boxes that follow the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from elope.data import IMAGENET_MEAN, IMAGENET_STD, ToNormalizedTensor, eval_transform, train_transform
from elope.data.transforms import PCA_EIGVAL, PCA_EIGVEC


def _rectangle_image(width: int = 200, height: int = 160, box=(40, 30, 120, 100)) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = 255
    return Image.fromarray(pixels)


def _bright_box(image: torch.Tensor) -> list[float]:
    """Pixel-edge box of the pixels brighter than mid-grey (in normalised units)."""
    mid = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    mask = (image > mid.view(3, 1, 1)).all(dim=0)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_eval_transform_shape_normalisation_and_box() -> None:
    image = _rectangle_image()
    boxes = tv_tensors.BoundingBoxes(
        [[40, 30, 120, 100]], format="XYXY", canvas_size=(160, 200), dtype=torch.float32
    )
    out, moved = eval_transform(100)(image, boxes)
    assert out.shape == (3, 100, 100) and out.dtype == torch.float32
    torch.testing.assert_close(moved[0], torch.tensor([20.0, 18.75, 60.0, 62.5]))
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 40, 40], white)
    torch.testing.assert_close(out[:, 5, 5], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))
    assert eval_transform(100).decode_size == 100


def test_tensor_and_pil_inputs_agree() -> None:
    image = _rectangle_image()
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    torch.testing.assert_close(eval_transform(64)(image), eval_transform(64)(tensor), atol=2e-2, rtol=0)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_box_follows_flip_and_rotation(seed: int) -> None:
    torch.manual_seed(seed)
    transform = train_transform(96, rotation=20, jitter=0.0, lighting=0.0)
    boxes = tv_tensors.BoundingBoxes(
        [[40, 30, 120, 100]], format="XYXY", canvas_size=(160, 200), dtype=torch.float32
    )
    out, moved = transform(_rectangle_image(), boxes)
    assert out.shape == (3, 96, 96)
    # the box of the rotated rectangle's corners is the box of its (rotated) pixels
    torch.testing.assert_close(
        moved[0], torch.tensor(_bright_box(out), dtype=torch.float32), atol=2.5, rtol=0
    )


def test_train_transform_is_random_and_clamps_boxes() -> None:
    torch.manual_seed(0)
    transform = train_transform(64)
    boxes = tv_tensors.BoundingBoxes(
        [[0, 0, 200, 160]], format="XYXY", canvas_size=(160, 200), dtype=torch.float32
    )
    outs = [transform(_rectangle_image(), boxes) for _ in range(4)]
    assert not torch.equal(outs[0][0], outs[1][0])
    for _, moved in outs:
        assert moved.min() >= 0 and moved.max() <= 64


def test_lighting_is_a_per_image_pca_offset() -> None:
    image = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    plain = ToNormalizedTensor()(image)
    torch.manual_seed(7)
    lit = ToNormalizedTensor(lighting=0.1)(image)
    torch.manual_seed(7)
    alpha = torch.randn(3) * 0.1
    rgb = torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))
    expected = rgb / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close((lit - plain)[:, 3, 3], expected)
    torch.testing.assert_close(lit - plain, expected.view(3, 1, 1).expand(3, 8, 8))


def test_fused_jitter_equals_sequential_unclamped_jitter_in_any_order() -> None:
    """The 3×3 colour map equals brightness, contrast, saturation one after the other (float64 reference)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(60, 190, (3, 6, 5), generator=generator, dtype=torch.uint8)
    params = {"brightness": 1.3, "contrast": 0.7, "saturation": 1.2, "offset": torch.zeros(3)}
    out = ToNormalizedTensor(jitter=0.4).transform(image, params).double()

    x = image.double() / 255
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)

    def brightness(y):
        return 1.3 * y

    def contrast(y):
        return 0.7 * y + 0.3 * (w * y).sum(0).mean()

    def saturation(y):
        return 1.2 * y - 0.2 * (w * y).sum(0, keepdim=True)

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    for order in [
        (brightness, contrast, saturation),
        (saturation, brightness, contrast),
        (contrast, saturation, brightness),
    ]:
        y = x
        for step in order:
            y = step(y)
        torch.testing.assert_close(out, (y - mean) / std, atol=1e-5, rtol=0)


def test_fused_jitter_matches_torchvision_where_nothing_clamps() -> None:
    from torchvision.transforms.v2 import functional as F

    image = torch.randint(90, 150, (3, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    params = {"brightness": 1.1, "contrast": 0.8, "saturation": 0.9, "offset": torch.zeros(3)}
    out = ToNormalizedTensor(jitter=0.4).transform(image, params)
    x = F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(image.float() / 255, 1.1), 0.8), 0.9)
    reference = F.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(out.as_subclass(torch.Tensor), reference, atol=2e-3, rtol=0)


def test_jitter_factors_stay_in_range() -> None:
    transform = ToNormalizedTensor(jitter=0.4)
    torch.manual_seed(0)
    factors = [
        transform.make_params([])[k] for _ in range(200) for k in ("brightness", "contrast", "saturation")
    ]
    assert 0.6 <= min(factors) < 0.65 and 1.35 < max(factors) <= 1.4


def test_to_normalized_tensor_accepts_float_and_rejects_bad_args() -> None:
    ones = torch.ones(3, 2, 2)
    torch.testing.assert_close(
        ToNormalizedTensor()(ones)[:, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    )
    with pytest.raises(ValueError, match="lighting"):
        ToNormalizedTensor(lighting=-1)
    with pytest.raises(ValueError, match="jitter"):
        ToNormalizedTensor(jitter=1.5)
    with pytest.raises(ValueError, match="448"):
        train_transform(0)
