"""MATLAB files of the datasets' list files (Stanford Cars' devkit, Stanford Dogs' ``train_list.mat``, Flowers-102's
``imagelabels.mat`` and ``setid.mat``): one variable read, or the reason it cannot be, naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from .errors import DatasetNotFoundError

__all__ = ["as_int", "load_mat_variables", "shown"]


def load_mat_variables(path: Path, keys: tuple[str, ...], dataset: str) -> dict[str, np.ndarray]:
    """The variables ``keys`` of the MATLAB file ``path``, each flattened to a 1-D array.

    Raises:
        DatasetNotFoundError: the file is missing, is not a MATLAB file, or lacks one of ``keys``.
    """
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: expected {path}, but it does not exist.", str(path))
    try:
        content = scipy.io.loadmat(str(path), squeeze_me=True)
    except Exception as error:  # scipy raises ValueError, MatReadError, OSError, ... for broken files
        raise DatasetNotFoundError(
            f"{dataset}: cannot read {path} as a MATLAB file: {error}", str(path)
        ) from None
    missing = [key for key in keys if key not in content]
    if missing:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DatasetNotFoundError(
            f"{dataset}: {path} has no variable {', '.join(map(repr, missing))} (found {found})", str(path)
        )
    return {key: np.atleast_1d(content[key]).ravel() for key in keys}


def as_int(value: Any) -> int:
    """``value`` as a Python int; ValueError when it is not one whole number."""
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(value)
    number = array.item()
    if float(number) != int(number):
        raise ValueError(value)
    return int(number)


def shown(value: Any) -> str:
    """``value`` as a message shows it: ``103``, not ``np.uint8(103)``."""
    array = np.asarray(value)
    return str(array.item()) if array.size == 1 else repr(value)
