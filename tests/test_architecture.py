"""The package's layers: imports run one way (downward), no import circles, no module over 400 lines, no
function over 60.

Every module of ``elope/`` is parsed with ``ast``; every import counts, also those inside functions (a
lazy import still ties two modules together). The layers, lowest first:

    base      elope.failures, elope.config,       messages, the recipe's schema (and its dataset options),
              elope.config_options, elope.outputs, output-path checks, the model's spec (τ, sizes,
              elope.spec                          normalisation)
    nn        elope.nn                            the paper's parts: pure nn.Modules and functions
    data      elope.data                          datasets, transforms, the procedural set
    deploy    elope.deploy                        the model as one inference graph
    runs      elope.runs                          the run folder: layout, save, load, guard
    engine    elope.engine                        the training recipe
    tasks     elope.tasks                         what the commands do: evaluate, predict, ablate, ...
    serve     elope.serve                         the HTTP server over an exported file (imports no other
                                                  layer: tests/test_serve_imports.py)
    commands  elope.commands, elope.cli, __main__, the package's __init__ (the public API)

A module may import its own layer and any layer below it, never one above.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "elope"
MAX_LINES = 400
MAX_FUNCTION_LINES = 60  # from `def` to the last line, the docstring included, decorators not

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "elope.failures",
            "elope.config",
            "elope.config_files",
            "elope.config_options",
            "elope.outputs",
            "elope.spec",
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
