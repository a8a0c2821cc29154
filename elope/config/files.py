"""Recipe files and ``--set`` overrides as plain dicts, before validation (:mod:`elope.config` validates).

:func:`read_yaml` reads a recipe file (``yaml.safe_load``: no ``!!python`` tags run), :func:`parse_override`
a ``key=value`` pair (the value parsed as YAML), :func:`set_dotted` sets a dotted key, :func:`deep_merge`
merges a partial recipe into a whole one. Every problem is a :class:`elope.failures.ConfigError` naming the
file or key, with echoed input cut short.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from elope.failures import ConfigError, short_repr

__all__ = ["deep_merge", "parse_override", "read_yaml", "set_dotted"]


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.seed=3"`` -> ``("train.seed", 3)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. loss.lambda=1.0)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: cannot parse value {short_repr(raw)}: {e}") from None
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``key="a.b"``; unknown keys are left for validation to name."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"config key {'.'.join(parts[: i + 1])!r} is a value, not a section: cannot set {key!r}"
            )
        node = child
    node[parts[-1]] = value


def deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge ``new`` into ``into`` section by section (a value replaces, a section merges)."""
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def read_yaml(path: Path) -> dict[str, Any]:
    """A recipe file as a dict: a regular UTF-8 file of YAML that holds a mapping (``safe_load``)."""
    if not path.is_file():  # a FIFO would block the read
        raise ConfigError(
            f"config file {str(path)!r} {'is not a regular file' if path.exists() else 'not found'}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return data
