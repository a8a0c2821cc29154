"""The upsampled box step with and without the whole upsampled heatmap (issue 17), timed side by side.

``heatmap_to_box(..., upsample=True, rule="peak")`` (the recipes' default) reads the rows and columns above τ
from the few pixels that decide them (``elope.nn.upsampled_threshold``); the reference upsamples the whole
map with ``F.interpolate`` and thresholds every pixel, as the code before it did. Both on the same smooth
random 14×14 maps, interleaved, one thread; the paper's step (every cell above τ, no upsampling) for scale.

    python -m benchmarks.box_step_timing
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, measuring
from elope.nn.localization import _box_from_hits, _minmax, heatmap_to_box, peak_region


def whole_map_box(maps: torch.Tensor, tau: float, size: int) -> torch.Tensor:
    """The reference: the peak region on the cells, then every pixel of the upsampled map."""
    maps = maps[:, 0]
    normalised, _ = _minmax(maps)
    region = peak_region(normalised, normalised > tau)
    up = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    mask = _minmax(up)[0] > tau
    near = F.max_pool2d(region[:, None].float(), kernel_size=3, stride=1, padding=1)
    mask = mask & (F.interpolate(near, size=(size, size), mode="nearest")[:, 0] > 0)
    return _box_from_hits(mask.any(dim=2), mask.any(dim=1), size, size)[0]


def main() -> None:
    print("| batch | frame | whole map (ms) | run ends (ms) | paper's step (ms) | speed-up |")
    print("|---|---|---|---|---|---|")
    with measuring(1), torch.inference_mode():
        for batch in (1, 8):
            for size in (448, 896):
                torch.manual_seed(batch * size)
                maps = F.avg_pool2d(torch.randn(batch, 1, 18, 18), 5, stride=1)
                assert torch.equal(
                    whole_map_box(maps, 0.6, size),
                    heatmap_to_box(maps, 0.6, size, upsample=True, rule="peak"),
                )
                t = interleaved(
                    {
                        "whole": lambda m=maps, s=size: whole_map_box(m, 0.6, s),
                        "ends": lambda m=maps, s=size: heatmap_to_box(m, 0.6, s, upsample=True, rule="peak"),
                        "paper": lambda m=maps, s=size: heatmap_to_box(m, 0.6, s),
                    },
                    repeats=40,
                    warmup=3,
                )
                ms = {name: t.median(name) * 1e3 for name in t}
                print(
                    f"| {batch} | {size} | {ms['whole']:.2f} | {ms['ends']:.2f} | {ms['paper']:.2f} | "
                    f"{t.ratio('whole', 'ends')['median_paired_ratio']:.1f}× |"
                )


if __name__ == "__main__":
    main()
