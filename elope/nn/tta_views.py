"""The names of the test-time augmentations (:mod:`elope.nn.tta`), without importing torch, so that the
commands' ``--tta`` choices show in ``--help`` at once."""

from __future__ import annotations

__all__ = ["TTA_VIEWS", "check_tta"]

TTA_VIEWS = ("flip",)


def check_tta(tta: str | None) -> str | None:
    """``tta`` itself when it names views of :data:`TTA_VIEWS` (or is None: no augmentation).

    Raises:
        ValueError: another name.
    """
    if tta is not None and tta not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_VIEWS)}")
    return tta
