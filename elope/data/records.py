"""What a dataset reader learns about one image and what it reports: :class:`Record` and :class:`Problem`.

Kept apart from :mod:`elope.data.annotations` (the index and the table parser) so that the checks across
records (:mod:`elope.data.duplicates`) and the index can both use them without an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Box", "Problem", "Record"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset: the file concerned and a sentence describing it."""

    path: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem}


@dataclass(frozen=True)
class Record:
    """One image of a dataset: file, 0-based label, box x1,y1,x2,y2 in stored-image pixels (or None).

    ``key`` is the image's id in the dataset (CUB's image id, the Cars file name, a folder image's path
    relative to the root); ``source`` and ``where`` say which list file and which entry of it named the
    image (``".../images.txt"``, ``"line 3"``), empty where no list file does (an image folder).
    """

    path: Path
    label: int
    box: Box | None = None
    key: str = ""
    source: str = ""
    where: str = ""
