"""Recipe files and ``--set`` overrides as plain dicts, before validation (:mod:`elope.config` validates).

:func:`read_yaml` reads a recipe file, :func:`parse_override` a ``key=value`` pair (the value parsed as
YAML), :func:`set_dotted` sets a dotted key, :func:`deep_merge` merges a partial recipe into a whole one.
Every problem is a :class:`elope.failures.ConfigError` naming the file or key, with echoed input cut short.

Both read YAML with :class:`RecipeLoader`, PyYAML's safe loader (no ``!!python`` tags run) with two
refusals that PyYAML does not make: a key given twice in one mapping (PyYAML silently keeps the last
value; the message names both lines), and nesting deeper than :data:`MAX_DEPTH` (PyYAML composes nodes
recursively, so a value nested a few thousand levels deep ends in ``RecursionError``; a recipe is five
levels deep at most). YAML 1.1 booleans (``yes``, ``on``, ...) stay booleans here; a boolean where the
recipe expects a number is refused by the schema (:data:`elope.config.options.Int` / ``Float``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from elope.failures import ConfigError, short_repr

__all__ = [
    "MAX_DEPTH",
    "RecipeLoader",
    "YamlShapeError",
    "deep_merge",
    "load_yaml",
    "parse_override",
    "read_yaml",
    "set_dotted",
]

#: How deep a recipe's YAML may nest (mappings and lists); the packaged recipes go 4 levels deep.
MAX_DEPTH = 32


class YamlShapeError(yaml.YAMLError):
    """A key given twice, or nesting deeper than :data:`MAX_DEPTH`: ``str()`` is the sentence to show."""


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a repeated key and nesting deeper than :data:`MAX_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise YamlShapeError(
                    f"the YAML nests deeper than {MAX_DEPTH} levels (line {line}); a recipe is at most 5 levels deep"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then `key: value` overrides the merged value: YAML's own rule
                key = self.construct_object(key_node)
                first = seen.setdefault(key, key_node.start_mark) if _hashable(key) else key_node.start_mark
                if first is not key_node.start_mark:
                    raise YamlShapeError(
                        f"key {short_repr(key)} is given twice in one mapping ({_where(first)} and "
                        f"{_where(key_node.start_mark)}): keep one"
                    )
        return super().construct_mapping(node, deep=deep)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def load_yaml(text: str) -> Any:
    """``text`` parsed by :class:`RecipeLoader` (raises ``yaml.YAMLError``; :class:`YamlShapeError` for a
    repeated key or too deep a nesting)."""
    return yaml.load(text, Loader=RecipeLoader)  # a SafeLoader subclass: no tags that run code


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.seed=3"`` -> ``("train.seed", 3)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. loss.lambda=1.0)")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except YamlShapeError as e:
        raise ConfigError(f"override {short_repr(key)}: {e}") from None
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
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start})") from None
    except YamlShapeError as e:
        raise ConfigError(f"config file {str(path)!r}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return data
