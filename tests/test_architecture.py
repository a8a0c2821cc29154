"""The package's layers: imports run one way (downward), no import circles, no module over 400 lines, no
function over 60 (the benchmarks too). And the rules of issue 20: no click below the commands, no
module-global hook lists, no ``sys.path`` edits in the benchmarks, one definition per value of the model's
spec (τ, image size, crop source, normalisation: resolved in ``elope/spec.py``, never re-derived with
``x if y is None else z`` below the commands) and τ stored once in ``model.json``.

Every module of ``elope/`` is parsed with ``ast``; every import counts, also those inside functions (a
lazy import still ties two modules together). The layers, lowest first:

    base      elope.failures, elope.config,       messages, the recipe's schema (and its dataset options),
              elope.outputs, elope.writer,        output-path checks, the one writer of every file, the
              elope.written, elope.spec,          model's spec (τ, sizes,
              elope.pixels,                       normalisation), decoded pixels' tones and orientation,
              elope.exported                      an exported file's metadata (read and checked once)
    nn        elope.nn                            the paper's parts: pure nn.Modules and functions
    data      elope.data                          datasets, transforms, the procedural set
    deploy    elope.deploy                        the model as one inference graph
    runs      elope.runs                          the run folder: layout, save, load, guard
    engine    elope.engine                        the training recipe
    tasks     elope.tasks                         what the commands do: evaluate, predict, ablate, ...
    serve     elope.serve                         the HTTP server over an exported file (imports no other
                                                  layer but elope.pixels, elope.exported and elope.spec:
                                                  tests/test_serve_imports.py)
    commands  elope.commands, elope.cli, __main__, the package's __init__ (the public API)

A module may import its own layer and any layer below it, never one above.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "elope"
BENCHMARKS = PACKAGE.parent / "benchmarks"
MAX_LINES = 400
MAX_FUNCTION_LINES = 60  # from `def` to the last line, the docstring included, decorators not

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "elope.failures",
            "elope.config",
            "elope.outputs",
            "elope.written",
            "elope.writer",
            "elope.spec",
            "elope.pixels",
            "elope.exported",
        ),
    ),
    ("nn", ("elope.nn",)),
    ("data", ("elope.data",)),
    ("deploy", ("elope.deploy",)),
    ("runs", ("elope.runs",)),
    ("engine", ("elope.engine",)),
    ("tasks", ("elope.tasks",)),
    ("serve", ("elope.serve",)),
    ("commands", ("elope.commands", "elope.cli", "elope.__main__", "elope")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """Index of the layer holding ``module`` (the longest matching prefix wins)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The elope modules ``path`` imports (top level and inside functions), resolved to module names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from elope.nn import model` imports the module elope.nn.model
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m == "elope" or m.startswith("elope.")} - {name}


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) & modules for p in paths}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``edges`` as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in edges.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_run_downward_only():
    assert upward_imports(graph()) == []


def test_no_module_over_400_lines():
    long = {
        module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def long_functions(source: str, filename: str = "<source>") -> dict[str, int]:
    """``qualified name -> lines`` of the functions (methods, nested ones) of ``source`` over the limit."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
                length = child.end_lineno - child.lineno + 1
                if not isinstance(child, ast.ClassDef) and length > MAX_FUNCTION_LINES:
                    found[f"{prefix}{child.name}"] = length
            visit(child, name)

    visit(ast.parse(source, filename), "")
    return found


def test_no_function_over_60_lines():
    long = {
        f"{module_name(p)}.{name}": n
        for p in sorted(PACKAGE.rglob("*.py"))
        for name, n in long_functions(p.read_text(), str(p)).items()
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {long}"


def test_the_checks_can_fail():
    """The checks see a circle, an upward import, a function-local import and a function over the limit."""
    assert find_cycle({"elope.a": {"elope.b"}, "elope.b": {"elope.a"}}) == ["elope.a", "elope.b", "elope.a"]
    assert find_cycle({"elope.a": {"elope.b"}, "elope.b": set()}) is None
    assert upward_imports({"elope.nn.model": {"elope.engine.train"}}) == [
        "elope.nn.model (nn) imports elope.engine.train (engine)"
    ]
    source = "def f():\n    from elope.engine import loop\n"
    tree_imports = {
        f"{n.module}.{a.name}"
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.ImportFrom)
        for a in n.names
    }
    assert tree_imports == {"elope.engine.loop"}
    body = "".join(f"x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    at_limit = "def short():\n" + textwrap.indent(body, "    ")
    over = "def long():\n" + textwrap.indent(body + "return 0\n", "    ")
    nested = "class C:\n    def m(self):\n        def inner():\n" + textwrap.indent(body, " " * 12)
    assert long_functions(at_limit) == {}
    assert long_functions(f"{over}\n{nested}") == {
        "long": MAX_FUNCTION_LINES + 1,
        "C.m": MAX_FUNCTION_LINES + 1,
    }


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_every_layer_holds_modules(layer):
    assert any(LAYERS[layer_of(m)][0] == layer for m in graph())


# --------------------------------------------------------------------------------- benchmarks (issue 20)
def test_benchmarks_follow_the_size_rules():
    sizes = {p.name: len(p.read_text().splitlines()) for p in BENCHMARKS.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
    long = {
        f"{p.name}: {name}": n
        for p in sorted(BENCHMARKS.glob("*.py"))
        for name, n in long_functions(p.read_text(), str(p)).items()
    }
    assert not long, f"benchmark functions over {MAX_FUNCTION_LINES} lines: {long}"


def sys_path_edits(source: str) -> list[int]:
    """Lines of ``source`` that touch ``sys.path``."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]


def test_benchmarks_run_as_modules_without_sys_path_edits():
    edits = {p.name: lines for p in BENCHMARKS.glob("*.py") if (lines := sys_path_edits(p.read_text()))}
    assert edits == {}, "run benchmarks as `python -m benchmarks.NAME`, not with sys.path inserts"
    assert sys_path_edits("import sys\nsys.path.insert(0, 'x')\n") == [2]  # the check can fail


# ----------------------------------------------------------------------------- engine and commands rules
def test_no_click_below_the_commands():
    """Only the commands talk to click; the layers below route what they say through a passed-in echo."""
    importers = sorted(
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if LAYERS[layer_of(module_name(p))][0] != "commands"
        and any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "click" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "click")
            for n in ast.walk(ast.parse(p.read_text()))
        )
    )
    assert importers == []


def mutable_globals(source: str) -> list[str]:
    """Module-level names bound to an empty list, dict or set: state that code fills at run time (a hook
    list, a registry)."""
    found = []
    for node in ast.parse(source).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        value = getattr(node, "value", None)
        empty = (
            isinstance(value, (ast.List, ast.Dict, ast.Set))
            and not getattr(value, "elts", getattr(value, "keys", [1]))
        ) or (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in ("list", "dict", "set")
            and not value.args
        )
        if empty:
            found += [t.id for t in targets if isinstance(t, ast.Name)]
    return found


#: Process-wide state that must be global: which run folders this process has locked, counted so that a
#: nested command (``elope suite`` around ``run_training``) re-enters its own lock (flock is per process).
#: The writer's sessions (the rules of the running command) and the outputs this process locks, alike.
PROCESS_STATE = {"elope.runs.lock": ["_HELD"], "elope.writer": ["_SESSIONS"], "elope.written": ["_HELD"]}


def test_no_module_global_hook_lists():
    """Hooks are passed in (``run_training(hooks=...)``), not appended to a module's global list; no other
    module-global mutable state but :data:`PROCESS_STATE`."""
    found = {
        module_name(p): names for p in PACKAGE.rglob("*.py") if (names := mutable_globals(p.read_text()))
    }
    assert found == PROCESS_STATE
    assert mutable_globals("STEP_HOOKS: list = []\nTABLE = {'a': 1}\nSEEN = set()\n") == [
        "STEP_HOOKS",
        "SEEN",
    ]


# ------------------------------------------------------------------------------ one definition per value
# (mean and std also name statistics of results: the normalisation is caught by its other names)
SPEC_NAMES = {"tau", "image_size", "crop_source", "normalization", "default_normalization"}


def spec_rederivations(source: str) -> list[int]:
    """Lines of ``source`` with ``a if b is None else c`` (or ``is not None``) on a value of the model's
    spec: a default re-derived where the spec should be read."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.IfExp) and isinstance(node.test, ast.Compare)):
            continue
        test = node.test
        if not any(isinstance(op, (ast.Is, ast.IsNot)) for op in test.ops):
            continue
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        if names & SPEC_NAMES:
            lines.append(node.lineno)
    return lines


def test_spec_values_are_not_rederived_below_the_commands():
    """τ, the image size, the crop source and the normalisation are resolved once (``elope/spec.py``:
    ``ModelSpec.resolve``) and read from the model's spec everywhere else; only the commands turn an
    option left out into the run's value."""
    found = {
        module_name(p): lines
        for p in PACKAGE.rglob("*.py")
        if LAYERS[layer_of(module_name(p))][0] != "commands" and module_name(p) != "elope.spec"
        if (lines := spec_rederivations(p.read_text()))
    }
    assert found == {}
    assert spec_rederivations("t = model.tau if tau is None else tau\nb = 1 if b is None else b\n") == [1]


def test_crop_source_and_tau_range_have_one_definition():
    """The crop source default (2 × image size) and τ's range are computed in elope/spec.py only."""
    calls = sorted(
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", getattr(n.func, "attr", None)) == "crop_source_size"
    )
    assert calls == ["elope.spec"]
    assert "0.0 <= tau < 1.0" not in "".join(p.read_text() for p in PACKAGE.rglob("*.py"))


def keys_named(data: object, name: str, path: str = "") -> list[str]:
    """Dotted paths of every key ``name`` in nested mappings."""
    if not isinstance(data, dict):
        return []
    found = [f"{path}{name}"] if name in data else []
    for key, value in data.items():
        found += keys_named(value, name, f"{path}{key}.")
    return found


def test_tau_and_the_spec_are_stored_once_in_model_json(tmp_path: Path):
    """model.json stores the model's τ, image size, crop source and normalisation once, under ``model``
    (the recipe under ``config`` keeps its own ``model.tau`` setting, which ``model.tau_select`` may
    replace); elope reads them from there."""
    import json

    from elope.config import load_config
    from elope.engine.context import run_spec
    from elope.engine.stages import make_model
    from elope.runs.model_folder import load_model, model_meta, save_model
    from elope.spec import SPEC_FIELDS

    cfg = load_config("synthetic", overrides={"model.backbone": "resnet18", "model.pretrained": False,
                                              "model.embedding_dim": 8, "dataset.image_size": 64})  # fmt: skip
    model = make_model(cfg, 3, run_spec(cfg).replace(tau=0.45))  # as the end of stage 2 leaves it
    meta = model_meta(cfg, ["a", "b", "c"], {"train": None, "val": None}, ["classifier"], False)
    save_model(model, tmp_path, meta)
    saved = json.loads((tmp_path / "model.json").read_text())
    outside_recipe = {k: v for k, v in saved.items() if k != "config"}
    for field in SPEC_FIELDS:
        assert keys_named(outside_recipe, field) == [f"model.{field}"], field
    assert saved["model"]["tau"] == 0.45 and saved["config"]["model"]["tau"] == cfg.model.tau != 0.45
    saved["config"]["model"]["tau"] = 0.9  # the recipe's setting is not read back
    (tmp_path / "model.json").write_text(json.dumps(saved))
    assert load_model(tmp_path)[0].spec.tau == 0.45
    assert keys_named({"a": {"tau": 1}, "tau": 2}, "tau") == ["tau", "a.tau"]
