"""The limits of ``elope profile``, without importing torch (``elope profile --help`` shows them)."""

from __future__ import annotations

__all__ = ["MAX_IMAGE_SIZE", "MAX_WEIGHT_BYTES"]

#: The largest input side profiled: MACs are counted by running one image, which above this side takes
#: more memory and time than a count is worth (they grow with the square of the side).
MAX_IMAGE_SIZE = 2048
#: The most memory the weights of the models profiled (ELoPE and the baseline, float32) may take. Each
#: option has its own cap, but the embedding layer and the classifier hold (2048 + C) × D parameters
#: together: 50,000 classes and a 65,536-wide embedding, each within its cap, make 13 GB.
MAX_WEIGHT_BYTES = 4 * 2**30
