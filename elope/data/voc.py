"""Boxes from PASCAL VOC XML files (Stanford Dogs' ``Annotation/``, Oxford-IIIT Pets' ``xmls/``).

A file holds one ``<object>`` per annotated object with ``<bndbox>`` ``xmin ymin xmax ymax``: 1-based,
inclusive pixel indices (VOC's convention, as the Cars devkit), so x1 = xmin - 1, y1 = ymin - 1,
x2 = xmax, y2 = ymax in pixel-edge coordinates. Where a file holds several objects the largest box is the
image's box (one box per image, as the localization metrics take it). A file that is not XML, or an object
without four numbers, is a problem of that file; nothing raises.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .records import Box, Problem

__all__ = ["read_voc_box"]

_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def _object_box(element: ET.Element) -> Box | None:
    """The pixel-edge box of one ``<object>``; None when its ``<bndbox>`` lacks a number or is inverted."""
    bndbox = element.find("bndbox")
    if bndbox is None:
        return None
    try:
        xmin, ymin, xmax, ymax = (float((bndbox.findtext(f) or "").strip()) for f in _FIELDS)
    except ValueError:
        return None
    if not (xmax >= xmin and ymax >= ymin):
        return None
    return (max(xmin - 1.0, 0.0), max(ymin - 1.0, 0.0), xmax, ymax)


def read_voc_box(path: Path, problems: list[Problem]) -> Box | None:
    """The largest object's box of the VOC file ``path`` (see the module), or None with a problem."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as error:
        problems.append(Problem(str(path), f"is not a valid XML annotation: {error}"))
        return None
    except OSError as error:
        problems.append(Problem(str(path), f"cannot read the annotation: {error.strerror or error}"))
        return None
    boxes = []
    for number, element in enumerate(tree.getroot().iter("object"), start=1):
        box = _object_box(element)
        if box is None:
            problems.append(
                Problem(
                    str(path),
                    f"object {number}: <bndbox> must hold numbers xmin <= xmax and ymin <= ymax",
                )
            )
            continue
        boxes.append(box)
    if not boxes:
        if not problems or problems[-1].path != str(path):
            problems.append(Problem(str(path), "holds no <object> with a <bndbox>"))
        return None
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
