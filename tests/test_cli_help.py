"""The command line's help is fast and readable (issue 27): ``elope --help`` and every sub-command's
``--help`` import no torch (the commands import it when they run), every option says what it does, the
command summaries are whole phrases, and no reStructuredText markup (double backticks) shows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from elope.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree under ``group`` (groups included), with its words on the command line."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_help_of_every_command_imports_no_torch() -> None:
    """In a fresh interpreter: ``python -m elope --help``, then each ``elope X --help`` (sub-commands of
    groups too), torch checked after each."""
    script = """
import json, runpy, sys
from elope.cli import main
words = json.loads(sys.argv[1])
seen = {}
for argv in words:
    try:
        if argv == ["--help"]:
            sys.argv = ["elope", "--help"]
            runpy.run_module("elope", run_name="__main__")
        else:
            main([*argv, "--help"])
    except SystemExit:
        pass
    seen[" ".join(argv)] = "torch" in sys.modules
print("RESULT" + json.dumps(seen))
"""
    words = [["--help"]] + [list(p) for p, _ in _commands(main)]
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(words)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.rsplit("RESULT", 1)[1])
    assert len(seen) == len(words)
    importers = [name for name, torch_loaded in seen.items() if torch_loaded]
    assert not importers, f"--help imported torch, first at: elope {importers[0]} --help"


def test_every_option_has_help_and_no_rst_markup() -> None:
    missing, markup = [], []
    for path, command in [((), main), *_commands(main)]:
        texts = [command.help or "", command.short_help or ""]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                if not param.help and param.name != "help":
                    missing.append(f"elope {' '.join(path)} {param.opts[0]}")
                texts.append(param.help or "")
        markup += [f"elope {' '.join(path)}: {t[:60]!r}" for t in texts if "``" in t]
    assert not missing, f"options without help: {missing}"
    assert not markup, f"reStructuredText double backticks in help: {markup}"


def test_command_summaries_are_not_cut() -> None:
    """The summaries of ``elope --help`` (and of ``elope data --help``) are whole phrases: click cuts a
    docstring's first sentence at 45 characters with '...', or at the first '. ' (as in '(Fig. 1)')."""
    for words in ([], ["data"]):
        output = CliRunner().invoke(main, [*words, "--help"], terminal_width=80).output
        listed = output.split("Commands:", 1)[1]
        assert "..." not in listed, listed
        for line in listed.strip().splitlines():
            assert line.count("(") == line.count(")"), line
    assert set(COMMANDS) <= {p[0] for p, _ in _commands(main)}
