"""Heatmap overlays and box drawings (matplotlib, Agg; PNG output).

Pictures of the paper's Sec. 5 pipeline: the 1×I×J heatmap (the backbone's mean feature map, or the
localization module's estimate of it) is min-max normalised and upsampled over the image, as in Figs. 2
and 4, and the box obtained by thresholding it at τ is drawn on top, as in Fig. 6. When a ground-truth box
is known it is drawn in a second colour, so the IoU ≥ 0.5 criterion of Table 4 can be judged by eye.

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas directly (no ``pyplot`` global
state, no backend switch), so the helpers are safe in scripts, tests and worker processes, never open a
window and leave the user's matplotlib backend alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from elope import writer

__all__ = [
    "BOX_COLOR",
    "GT_BOX_COLOR",
    "ExampleItem",
    "overlay_heatmap",
    "save_example_sheet",
    "save_prediction_figure",
    "to_display_image",
    "upsample_heatmap",
]

BOX_COLOR = "#00ff00"  # predicted box (localization module)
GT_BOX_COLOR = "#ff00ff"  # ground-truth box, only used to measure localization (Table 4)

ImageLike = Image.Image | np.ndarray | torch.Tensor
BoxLike = Sequence[float] | np.ndarray | torch.Tensor


def to_display_image(
    image: ImageLike, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """Return ``image`` as an ``(H, W, 3)`` float array in [0, 1] for ``imshow``.

    Accepts a PIL image, an ``(H, W[, 3])`` array (uint8, or float in [0, 1]) or a ``(3, H, W)`` tensor.
    Give ``mean`` and ``std`` to undo the normalisation of a model input tensor.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected an image tensor of shape (3, H, W), got {tuple(t.shape)}")
        if mean is not None and std is not None:
            t = t * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
        arr = t.expand(3, -1, -1).permute(1, 2, 0).numpy()
        return np.clip(arr, 0.0, 1.0)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an image array of shape (H, W, 3), got {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def upsample_heatmap(heatmap: torch.Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """Min-max normalise a ``(h, w)``/``(1, h, w)`` heatmap and upsample it bilinearly to ``(height, width)``.

    The same min-max normalisation as Sec. 5 applies before thresholding at τ (and as Figs. 2 and 4 show).
    A constant heatmap maps to zeros.
    """
    hm = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap)
    hm = hm.detach().to("cpu", torch.float32).squeeze()
    if hm.ndim != 2:
        raise ValueError(f"expected a heatmap of shape (h, w) or (1, h, w), got {tuple(hm.shape)}")
    hm = F.interpolate(hm[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    lo, hi = hm.min(), hm.max()
    hm = (hm - lo) / (hi - lo) if hi > lo else torch.zeros_like(hm)
    return hm.numpy()


def _draw_box(ax: Any, box: BoxLike, color: str, label: str | None = None) -> None:
    x1, y1, x2, y2 = (float(v) for v in (box.tolist() if hasattr(box, "tolist") else box))
    if not all(np.isfinite([x1, y1, x2, y2])):
        return  # no box (e.g. a dataset without box annotations): nothing to draw
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2, label=label))


def _draw_panel(
    ax: Any,
    image: ImageLike,
    heatmap: torch.Tensor | np.ndarray | None,
    box: BoxLike | None,
    gt_box: BoxLike | None,
    title: str | None,
    alpha: float,
) -> None:
    img = to_display_image(image)
    h, w = img.shape[:2]
    ax.imshow(img, extent=(0, w, h, 0), interpolation="bilinear")
    if heatmap is not None:
        ax.imshow(
            upsample_heatmap(heatmap, h, w), cmap="jet", alpha=alpha, extent=(0, w, h, 0), vmin=0, vmax=1
        )
    if gt_box is not None:
        _draw_box(ax, gt_box, GT_BOX_COLOR, "ground truth")
    if box is not None:
        _draw_box(ax, box, BOX_COLOR, "predicted")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def overlay_heatmap(
    image: ImageLike,
    heatmap: torch.Tensor | np.ndarray | None,
    box: BoxLike | None,
    gt_box: BoxLike | None = None,
    title: str | None = None,
    *,
    alpha: float = 0.45,
    dpi: int = 100,
) -> Figure:
    """One figure: the image, the min-max normalised heatmap over it, the predicted box (and ground truth).

    ``image`` in display range (PIL, uint8/float array, or a (3, H, W) tensor in [0, 1]: see
    :func:`to_display_image` to undo a normalisation); ``heatmap`` (h, w) or (1, h, w) at any resolution
    (the localizer's 14×14, Sec. 5); boxes ``x1, y1, x2, y2`` in pixels of ``image``. The figure keeps the
    image's aspect ratio.
    """
    img = to_display_image(image)
    h, w = img.shape[:2]
    scale = 5.0 / max(h, w)
    fig = Figure(figsize=(max(w * scale, 2.0), max(h * scale, 2.0) + (0.6 if title else 0.0)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    _draw_panel(ax, img, heatmap, box, gt_box, title, alpha)
    fig.tight_layout(pad=0.3)
    return fig


def save_prediction_figure(
    path: str | Path,
    image: ImageLike,
    heatmap: torch.Tensor | np.ndarray | None,
    box: BoxLike | None,
    gt_box: BoxLike | None = None,
    title: str | None = None,
    *,
    dpi: int = 100,
) -> Path:
    """Write :func:`overlay_heatmap` as a PNG to ``path`` (parent folders created) and return the path."""
    path = Path(path)
    fig = overlay_heatmap(image, heatmap, box, gt_box, title, dpi=dpi)
    with writer.write_with(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


@dataclass
class ExampleItem:
    """One cell of an example sheet (Fig. 6): an image with its box, optionally heatmap and ground truth."""

    image: ImageLike
    box: BoxLike | None = None
    heatmap: torch.Tensor | np.ndarray | None = None
    gt_box: BoxLike | None = None
    title: str | None = None


def save_example_sheet(
    path: str | Path,
    items: Sequence[ExampleItem | dict[str, Any]],
    *,
    ncols: int = 4,
    cell_inches: float = 2.5,
    alpha: float = 0.45,
    dpi: int = 100,
) -> Path:
    """Write a grid of examples like the paper's Fig. 6 (images with the boxes of the localization module).

    ``items`` are :class:`ExampleItem` or dicts with the same keys. Cells with a heatmap show it overlaid
    (Fig. 4 style). Returns the path of the PNG written.
    """
    if not items:
        raise ValueError("save_example_sheet needs at least one item")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    cells = [it if isinstance(it, ExampleItem) else ExampleItem(**it) for it in items]
    ncols = min(ncols, len(cells))
    nrows = -(-len(cells) // ncols)
    fig = Figure(figsize=(ncols * cell_inches, nrows * cell_inches), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(cells):
            c = cells[i]
            _draw_panel(ax, c.image, c.heatmap, c.box, c.gt_box, c.title, alpha)
        else:
            ax.set_axis_off()
    fig.tight_layout(pad=0.3)
    path = Path(path)
    with writer.write_with(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
