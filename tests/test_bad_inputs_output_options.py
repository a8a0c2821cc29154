"""Every output option of every command against the writer's rules (issue 26, section 1; ``elope/writer.py``).

The output options are found in the click tree (a non-flag option named ``--out``, or whose help says it
writes); :data:`OUTPUTS` must name each, with how to call its command. Each is then given, in turn: a
symbolic link, one of the command's inputs, a file (or folder) of the run it reads, a file (or folder) of
the data set it reads, and (a file output, or a file the folder output writes) a file elope did not write.
Each must be refused in one line before any work, with the target unchanged. The run is a stand-in (its
files are never loaded: the refusals come first), so the whole table runs in seconds. That every write is
atomic is the AST scan's part (``tests/test_one_writer.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from bad_inputs import assert_clean_exit, invoke, tree_hash
from PIL import Image

from elope.cli import main

Args = Callable[["Setup", Path], list[str | Path]]


@dataclass
class Setup:
    """A stand-in run R (its model.json names the data set D), D, an input photo and a config file."""

    tmp: Path
    run: Path = field(init=False)
    data: Path = field(init=False)
    photo: Path = field(init=False)
    config: Path = field(init=False)
    model: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.tmp / "D"
        (self.data / "CUB_200_2011").mkdir(parents=True)
        (self.data / "CUB_200_2011" / "images.txt").write_text("1 001.A/a.jpg\n")
        self.run = self.tmp / "R"
        (self.run / "model").mkdir(parents=True)
        (self.run / "config.yaml").write_text("dataset: {}\n")
        (self.run / "metrics.jsonl").write_text('{"data": 1}\n')
        (self.run / "model" / "model.json").write_text(f'{{"root": "{self.data}"}}\n')
        (self.run / "model" / "model.safetensors").write_bytes(b"weights")
        self.photo = self.tmp / "photo.jpg"
        Image.new("RGB", (8, 8)).save(self.photo)
        self.config = self.tmp / "recipe.yaml"
        self.config.write_text("train: {}\n")
        self.model = self.tmp / "m.onnx"  # a stand-in exported file: the refusals come before it is read
        self.model.write_bytes(b"onnx")


@dataclass(frozen=True)
class Output:
    """An output option: ``kind`` file or dir; ``args`` the command with ``target`` as its value; what the
    command reads (``run``, ``data``), ``input`` (one of its input files, or None) and ``writes`` (for a
    folder: a file it writes there, refused when it is the user's; None for a folder the command owns)."""

    kind: str
    args: Args
    run: bool = False
    data: bool = False
    input: Callable[[Setup], Path] | None = None
    writes: str | None = None


OUTPUTS: dict[tuple[str, str], Output] = {
    ("evaluate", "--json"): Output(
        "file", lambda s, t: ["evaluate", "--run", s.run, "--json", t], run=True, data=True
    ),
    ("evaluate", "--predictions"): Output(
        "file", lambda s, t: ["evaluate", "--run", s.run, "--predictions", t], run=True, data=True
    ),
    ("evaluate", "--report"): Output(
        "dir",
        lambda s, t: ["evaluate", "--run", s.run, "--report", t],
        run=True,
        data=True,
        writes="report.html",
    ),
    ("predict", "--save-vis"): Output(
        "dir",
        lambda s, t: ["predict", "--run", s.run, s.photo, "--save-vis", t],
        run=True,
        input=lambda s: s.photo,
        writes="photo.png",
    ),
    ("export", "--out"): Output("file", lambda s, t: ["export", "--run", s.run, "--out", t], run=True),
    ("embed", "--out"): Output(
        "file",
        lambda s, t: ["embed", "--run", s.run, s.photo, "--out", t],
        run=True,
        input=lambda s: s.photo,
    ),
    ("embed", "--out", "split"): Output(
        "file", lambda s, t: ["embed", "--run", s.run, "--out", t], run=True, data=True
    ),
    ("enroll", "--out"): Output(
        "dir", lambda s, t: ["enroll", "--run", s.run, "--class", "new", s.photo, "--out", t], run=True
    ),
    ("data synth", "--out"): Output("dir", lambda s, t: ["data", "synth", "--out", t]),
    ("train", "--out"): Output(
        "dir", lambda s, t: ["train", "--dataset", "cub", "--root", s.data, "--out", t], data=True
    ),
    ("demo", "--out"): Output("dir", lambda s, t: ["demo", "--out", t]),
    ("ablate", "--out"): Output(
        "dir",
        lambda s, t: ["ablate", "--root", s.data, "--dataset", "cub", "--config", s.config, "--out", t],
        data=True,
        input=lambda s: s.config,
    ),
    ("suite", "--out"): Output(
        "dir", lambda s, t: ["suite", "--config", s.config, "--out", t], input=lambda s: s.config
    ),
    ("data shard", "--out"): Output(
        "dir", lambda s, t: ["data", "shard", "--dataset", "cub", "--root", s.data, "--out", t], data=True
    ),
    ("predict", "--out"): Output(
        "dir", lambda s, t: ["predict", "--model", s.model, s.photo, "--out", t], input=lambda s: s.model
    ),
    ("web", "--out"): Output(
        "dir", lambda s, t: ["web", "--model", s.model, "--out", t], input=lambda s: s.model
    ),
}


def output_options() -> set[tuple[str, str]]:
    """``(command, option)`` of every output option in the click tree."""
    ctx = click.Context(main)
    found: set[tuple[str, str]] = set()

    def walk(command: click.Command, names: list[str]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*names, name])
            return
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag:
                name = max(param.opts, key=len)
                if name == "--out" or "write" in (param.help or "").lower():
                    found.add((" ".join(names), name))

    walk(main, [])
    return found


def test_every_output_option_is_in_the_table() -> None:
    assert output_options() == {key[:2] for key in OUTPUTS}


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _refused(setup: Setup, output: Output, target: Path, *needles: str) -> None:
    """Refused in one line (exit 1; 2 where click's own path type refuses it first), nothing changed."""
    before = tree_hash(setup.tmp)
    result = invoke(*output.args(setup, target))
    assert_clean_exit(result, 2 if result.exit_code == 2 and not needles else 1, *needles)
    after = tree_hash(setup.tmp)
    assert {k: v for k, v in after.items() if "elope-lock" not in k} == before


CASES = list(OUTPUTS.items())
IDS = [" ".join(key) for key in OUTPUTS]


@pytest.mark.parametrize(("key", "output"), CASES, ids=IDS)
def test_a_link_is_refused(setup: Setup, key: tuple[str, ...], output: Output) -> None:
    outside = setup.tmp / "outside"
    if output.kind == "dir":
        outside.mkdir()
    else:
        outside.write_text("the user's")
    link = setup.tmp / "link"
    link.symlink_to(outside)
    _refused(setup, output, link, "is a symbolic link")


@pytest.mark.parametrize(
    ("key", "output"), [c for c in CASES if c[1].input], ids=[" ".join(k) for k, o in CASES if o.input]
)
def test_an_input_is_refused(setup: Setup, key: tuple[str, ...], output: Output) -> None:
    assert output.input is not None
    _refused(setup, output, output.input(setup))


@pytest.mark.parametrize(
    ("key", "output"), [c for c in CASES if c[1].run], ids=[" ".join(k) for k, o in CASES if o.run]
)
def test_a_file_of_the_run_is_refused(setup: Setup, key: tuple[str, ...], output: Output) -> None:
    target = setup.run / ("model" if output.kind == "dir" else "metrics.jsonl")
    _refused(setup, output, target, "which this command reads")


@pytest.mark.parametrize(
    ("key", "output"), [c for c in CASES if c[1].data], ids=[" ".join(k) for k, o in CASES if o.data]
)
def test_a_file_of_the_data_set_is_refused(setup: Setup, key: tuple[str, ...], output: Output) -> None:
    base = setup.data / "CUB_200_2011"
    _refused(
        setup, output, base / ("new" if output.kind == "dir" else "images.txt"), "which this command reads"
    )


FOREIGN = [c for c in CASES if c[1].kind == "file" or c[1].writes]


@pytest.mark.parametrize(("key", "output"), FOREIGN, ids=[" ".join(k) for k, o in FOREIGN])
def test_a_file_elope_did_not_write_needs_force(setup: Setup, key: tuple[str, ...], output: Output) -> None:
    target = setup.tmp / "out"
    if output.kind == "dir":
        target.mkdir()
        (target / str(output.writes)).write_text("the user's")
    else:
        target.write_text("the user's")
    _refused(setup, output, target, "not written by elope", "--force")
