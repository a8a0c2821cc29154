"""Bad inputs, third round (issue 26, docs/reliability.md): every numeric option of every command has finite,
documented bounds, and a value outside them is a usage error.

The click tree is walked (every command but ``serve``, whose options are another test's); an option is
numeric when its type turns ``"1"`` into a number. Each must show finite bounds in its ``--help`` (a click
range with a minimum and a maximum, or a range written in its help), and each of NaN, infinities, 1e308,
-1 and a 400-digit number must be refused by click itself: exit status 2, the option named, no traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from bad_inputs import assert_clean_exit, deadline, invoke

from elope.cli import main

BAD_VALUES = ("nan", "inf", "-inf", "1e308", "-1", "9" * 400)
SKIPPED = ("serve",)  # the server's options: tests/test_serve_*.py


def _converts_to_number(kind: click.ParamType) -> bool:
    """Whether ``kind`` is a numeric type: click's int and float types (ranges included), a tuple of them, or
    a type of our own that turns "1" into a number."""
    if isinstance(kind, click.Tuple):
        return all(_converts_to_number(k) for k in kind.types)
    if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
        return True
    if isinstance(kind, (click.Choice, click.Path, click.types.BoolParamType, click.types.StringParamType)):
        return False
    try:
        value = kind.convert("1", None, None)
    except (click.BadParameter, TypeError, ValueError):
        return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _commands() -> list[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(main)
    found = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), (*path, name))
        else:
            found.append((path, command))

    walk(main, ())
    return [(path, command) for path, command in found if path[0] not in SKIPPED]


NUMERIC_OPTIONS = [
    pytest.param(path, option, id=f"{' '.join(path)} {option.opts[0]}")
    for path, command in _commands()
    for option in command.params
    if isinstance(option, click.Option) and _converts_to_number(option.type)
]


def _ranges(kind: click.ParamType) -> list[click.types._NumberRangeBase | None]:
    kinds = kind.types if isinstance(kind, click.Tuple) else [kind]
    return [k if isinstance(k, click.types._NumberRangeBase) else None for k in kinds]


def test_the_sweep_finds_the_numeric_options() -> None:
    """The walk itself: it sees options of several commands, of each kind (a failure here explains others)."""
    names = {f"{' '.join(p.values[0])} {p.values[1].opts[0]}" for p in NUMERIC_OPTIONS}
    expected_options = (
        "predict --top",
        "data synth --aspect",
        "data synth --train",
        "export --batch",
        "evaluate --tau",
    )
    for expected in (*expected_options, "train --image-size", "export --opset"):
        assert expected in names, sorted(names)
    assert "data synth --object-scale" in names and "train --out" not in names


@pytest.mark.parametrize(("path", "option"), NUMERIC_OPTIONS)
def test_every_numeric_option_has_finite_documented_bounds(
    path: tuple[str, ...], option: click.Option
) -> None:
    ctx = click.Context(click.Command(path[-1]))
    help_text = " ".join(option.get_help_record(ctx) or ())
    ranges = _ranges(option.type)
    if all(r is not None for r in ranges):
        for r in ranges:
            assert r.min is not None and r.max is not None, f"{option.opts[0]}: {r!r} is open"
        if not isinstance(option.type, click.Tuple):  # click writes a single range into the help itself
            assert re.search(r"\d\s*<=?\s*x\s*<=?\s*\d", help_text), help_text
        else:
            assert re.search(r"\[\s*[\d.]+,\s*[\d.]+\]", help_text), help_text
    else:  # a type of our own: the range is written in the help
        assert re.search(r"\d[\d,]*\s*-\s*\d[\d,]*", help_text), help_text


@pytest.mark.parametrize(("path", "option"), NUMERIC_OPTIONS)
def test_every_numeric_option_refuses_nan_inf_huge_and_negative(
    path: tuple[str, ...], option: click.Option, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a value that is let through must not start work in the checkout (demo)
    name = option.opts[0]
    for bad in BAD_VALUES:
        values = [bad] * option.nargs
        with deadline(60):  # a value let through may start the work: fail instead of running it
            result = invoke(*path, name, *values)
        assert_clean_exit(result, 2, name)
        assert "Invalid value" in result.output, (bad, result.output)
