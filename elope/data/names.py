"""Class names: which ones a dataset or ``elope enroll`` may use, and when two are the same name.

A class name is printed by ``predict`` and ``evaluate``, written to CSV and JSON reports and keyed in
per-class metrics, so two classes whose names read the same make every one of those ambiguous (and a
per-class table keyed by name silently merges them: ``evaluate`` reported a mean per-class accuracy of 0.0
beside a top-1 of 33 %). Two names are the same when they are equal after Unicode NFKC normalisation,
case folding and collapsing white space (:func:`class_name_key`): ``"Ivory Gull"``, ``"ivory  gull "`` and
``"Ｉｖｏｒｙ Gull"`` are one name. A name must hold a visible character, at most :data:`MAX_NAME_LENGTH`
characters, and no control or format character, line or paragraph separator, or undecodable byte
(:func:`class_name_problem`): a newline in a name splits one line of output in two.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_NAME_LENGTH", "class_name_key", "class_name_problem"]

#: The longest class name accepted (the longest of the datasets' own is under 60 characters).
MAX_NAME_LENGTH = 256
# Cc: control (\n, \t, \x1b), Cf: format (bidirectional overrides, zero-width), Cs: undecodable bytes of a
# file name (surrogate escapes), Zl / Zp: line and paragraph separators.
_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")


def class_name_key(name: str) -> str:
    """The form in which two names that read the same are equal (NFKC, case folded, spaces collapsed)."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def class_name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a class name (a phrase), or None when it is a good one."""
    if not isinstance(name, str):
        return f"{name!r} is not text"
    if not name.strip():
        return f"{name!r} is empty or only white space"
    if len(name) > MAX_NAME_LENGTH:
        return f"a name of {len(name)} characters is longer than {MAX_NAME_LENGTH}"
    bad = next((c for c in name if unicodedata.category(c) in _REFUSED_CATEGORIES), None)
    if bad is not None:
        return (
            f"{name[:60]!r} holds the character U+{ord(bad):04X} ({unicodedata.category(bad)}: a control or "
            "format character, a line separator or an undecodable byte)"
        )
    return None
