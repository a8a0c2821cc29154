"""The one loop over a dataset: :func:`iterate` a :class:`elope.evaluation.predictor.Predictor` over
batches.

``elope evaluate`` (``--run`` and ``--model``), its report, MaxBoxAccV2's selection pass, ``elope embed``
(a split, image files, an exported file), the localization study, validation during training and the
check at the end of stage 2 all read their images through it: each batch is moved to the predictor's
device once (:meth:`~elope.evaluation.predictor.Predictor.prepare`) and given the outputs the pass asks
for (:class:`elope.evaluation.outputs.Want`); what a pass does with them (metrics, lines, sums) is its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tqdm import tqdm

from elope.evaluation.outputs import BatchOutputs, Want
from elope.evaluation.predictor import Predictor

__all__ = ["iterate"]


def iterate(
    predictor: Predictor,
    batches: Iterable[Sequence[Any]],
    want: Want,
    *,
    progress: str | None = None,
    leave: bool = True,
) -> Iterator[tuple[list[Any], BatchOutputs | None]]:
    """``(batch, outputs)`` for every batch of ``batches``, in order: the batch as the loader gave it with
    its images (its first item) on the predictor's device, and the :class:`BatchOutputs` ``want`` asks
    for (None for a batch whose images are None: every image of it unreadable and left out).

    ``progress``: the description of a progress bar on standard error (shown on a terminal only; kept
    when done unless ``leave`` is false); None: no bar.
    """
    bar = batches
    if progress is not None:
        bar = tqdm(batches, desc=progress, unit="batch", leave=leave, dynamic_ncols=True, disable=None)
    for batch in bar:
        items = list(batch)
        if items[0] is None:
            yield items, None
            continue
        items[0] = predictor.prepare(items[0])
        yield items, predictor.predict_batch(items[0], want)
