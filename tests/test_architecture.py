"""The package's layers: imports run one way (downward), no import circles, no module over 400 lines, no
function over 60 lines (the benchmarks and the research scripts too) nor over 10 parameters, and the layer
table of docs/architecture.md is the measured one. And the rules of issue 20: no click below the commands, no
module-global hook lists, no ``sys.path`` edits in the benchmarks, one definition per value of the model's
spec (τ, sides, box rule, upsampling, margin, normalisation: made in ``elope/spec.py``, never re-derived with
``x if y is None else z`` below the commands) and τ stored once in ``model.json``.

Every module of ``elope/`` and ``benchmarks/`` is parsed with ``ast``; every import counts, also those inside functions (a
lazy import still ties two modules together). The layers, lowest first:

    base      elope.failures, elope.config,       messages, the recipe's schema (and its dataset options),
              elope.outputs, elope.writer,        output-path checks, the one writer of every file, the
              elope.written, elope.spec,          model's spec (τ, sizes,
              elope.pixels,                       normalisation), decoded pixels' tones and orientation,
              elope.exported,                     an exported file's metadata (read and checked once),
              elope.device,                       devices by name (train and inference alike),
              elope.page_assets                   what both web pages share (look, cards, drawing)
    nn        elope.nn                            the paper's parts: pure nn.Modules and functions
    data      elope.data                          datasets, transforms, the procedural set
    evaluation elope.evaluation                   the one evaluation loop over a Predictor, the metrics
    deploy    elope.deploy                        the model as one inference graph
    runs      elope.runs                          the run folder: layout, save, load, guard
    engine    elope.engine                        the training recipe
    tasks     elope.tasks                         the product: evaluate, predict, embed, enroll, report, ...
    research  elope.research                      the studies: ablate, suite, the localization study, and
                                                  the scripts of the research record (research.experiments)
    serve     elope.serve                         the HTTP server over an exported file (imports no other
                                                  layer but elope.pixels, elope.exported, elope.spec and
                                                  elope.page_assets:
                                                  tests/test_serve_imports.py)
    commands  elope.commands, elope.cli, __main__, the package's __init__ (the public API)
    benchmarks benchmarks                         timings of the package (may import all of it, never imported)

A module may import its own layer and any layer below it, never one above.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "elope"
BENCHMARKS = PACKAGE.parent / "benchmarks"
SOURCES = (PACKAGE, BENCHMARKS)  # the import rules (layers, no circle) and the size rules hold for both
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
            "elope.device",
            "elope.lazy",
            "elope.page_assets",
        ),
    ),
    ("nn", ("elope.nn",)),
    ("data", ("elope.data",)),
    ("evaluation", ("elope.evaluation",)),
    ("deploy", ("elope.deploy",)),
    ("runs", ("elope.runs",)),
    ("engine", ("elope.engine",)),
    ("tasks", ("elope.tasks",)),
    ("research", ("elope.research",)),
    ("serve", ("elope.serve",)),
    ("commands", ("elope.commands", "elope.cli", "elope.__main__", "elope")),
    ("benchmarks", ("benchmarks",)),
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
    return {m for m in found if m.split(".")[0] in ("elope", "benchmarks")} - {name}


def source_files() -> list[Path]:
    """Every module under the rules: the package and the benchmarks."""
    return sorted(p for root in SOURCES for p in root.rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """Who imports whom among :func:`source_files` (a fresh copy for each caller)."""
    return {module: set(imported) for module, imported in _parsed_graph().items()}


@functools.cache
def _parsed_graph() -> dict[str, frozenset[str]]:
    """The import graph, parsed once per test session (the checks of this module each read it)."""
    paths = source_files()
    modules = {module_name(p) for p in paths}
    return {module_name(p): frozenset(imports_of(p, modules) & modules) for p in paths}


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
    long = {module_name(p): n for p in source_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
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
        for p in source_files()
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


def layer_imports(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """``layer -> the other layers its modules import``."""
    found: dict[str, set[str]] = {name: set() for name, _ in LAYERS}
    for source, targets in edges.items():
        here = LAYERS[layer_of(source)][0]
        found[here] |= {LAYERS[layer_of(t)][0] for t in targets} - {here}
    return found


def documented_layer_imports(text: str) -> dict[str, set[str]]:
    """The table between ``<!-- imports: begin -->`` and ``<!-- imports: end -->`` of docs/architecture.md."""
    table = text.split("<!-- imports: begin -->")[1].split("<!-- imports: end -->")[0]
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| `")]
    return {
        layer.strip("`"): set() if cell.strip() == "nothing" else {c.strip() for c in cell.split(",")}
        for layer, cell in rows
    }


def test_the_docs_state_who_imports_what():
    """docs/architecture.md's table of which layer imports which is the import graph's."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert documented_layer_imports(doc) == layer_imports(graph())
    wrong = doc.replace("| `serve` | base |", "| `serve` | nothing |")
    assert documented_layer_imports(wrong) != layer_imports(graph())  # the check can fail


def test_training_does_not_import_deploy():
    """The training recipe (``elope.engine``) imports no module of ``elope.deploy`` (the inference graph):
    what both need, device selection, is in the base (``elope.device``)."""
    edges = graph()
    found = sorted(
        f"{source} imports {target}"
        for source, targets in edges.items()
        if source.startswith("elope.engine")
        for target in targets
        if target.startswith("elope.deploy")
    )
    assert found == []
    assert "elope.device" in edges["elope.engine.train"]


def test_the_benchmarks_are_in_the_graph():
    """The benchmarks are modules of the graph: their imports (lazy ones too) count, a circle through them
    is found (``benchmarks/gpu.py`` ↔ ``gpu_compiled.py`` was one), and the package may not import them."""
    edges = graph()
    assert "benchmarks.gpu_compiled" in edges["benchmarks.gpu"]  # imported inside a function
    assert "elope.nn.model" in edges["benchmarks.gpu_setting"]
    edges["benchmarks.gpu_compiled"] = edges["benchmarks.gpu_compiled"] | {"benchmarks.gpu"}
    assert find_cycle(edges) == ["benchmarks.gpu", "benchmarks.gpu_compiled", "benchmarks.gpu"]
    assert upward_imports({"elope.tasks.profile": {"benchmarks.common"}}) == [
        "elope.tasks.profile (tasks) imports benchmarks.common (benchmarks)"
    ]


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_every_layer_holds_modules(layer):
    assert any(LAYERS[layer_of(m)][0] == layer for m in graph())


# ------------------------------------------------------------------------------ parameters (issue 27)
MAX_PARAMETERS = 10  # every parameter counts (positional, keyword-only, *args, **kwargs); self/cls do not

#: Functions still over :data:`MAX_PARAMETERS`, each with its count today: the count may only go down (a
#: function leaves the list once it is within the limit). A click command takes ``**given`` and builds its
#: options object (``TrainOptions``, ``EvaluateOptions``, ...) instead of one parameter per option.
OVER_THE_LIMIT = {
    "elope.research.ablate.run_ablation": 12,
    "elope.commands.data.synth_command": 11,  # 10 options and **knobs
}


def parameter_counts(source: str) -> dict[str, int]:
    """``qualified name -> number of parameters`` of every function of ``source`` (methods without
    ``self``/``cls``)."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", True)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = child.args
                named = [*a.posonlyargs, *a.args]
                count = len(named) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
                if in_class and named and named[0].arg in ("self", "cls"):
                    count -= 1
                found[f"{prefix}{child.name}"] = count
                visit(child, f"{prefix}{child.name}.", False)
            else:
                visit(child, prefix, in_class)

    visit(ast.parse(source), "", False)
    return found


def test_no_function_over_10_parameters():
    """A function takes at most :data:`MAX_PARAMETERS` parameters: more are grouped into a small dataclass
    (``engine/steps.py: Learner``, the commands' options objects); the few left are listed, with their
    count, in :data:`OVER_THE_LIMIT`."""
    counts = {
        f"{module_name(p)}.{name}": n
        for p in sorted(PACKAGE.rglob("*.py"))
        for name, n in parameter_counts(p.read_text()).items()
    }
    over = {name: n for name, n in counts.items() if n > MAX_PARAMETERS}
    grown = {name: n for name, n in over.items() if n > OVER_THE_LIMIT.get(name, MAX_PARAMETERS)}
    assert grown == {}, f"functions over {MAX_PARAMETERS} parameters (group them): {grown}"
    assert set(OVER_THE_LIMIT) <= set(over), (
        f"within the limit now, drop from OVER_THE_LIMIT: {set(OVER_THE_LIMIT) - set(over)}"
    )
    assert counts["elope.engine.loop.train_one_epoch"] <= 6
    assert (
        counts["elope.commands.train.train_command"]
        == counts["elope.commands.evaluate.evaluate_command"]
        == 1
    )


def test_the_parameter_count_can_fail():
    source = textwrap.dedent(
        """
        def f(a, b, /, c, *args, d, **kw): pass
        class C:
            def m(self, a): pass
            @classmethod
            def k(cls, a, b): pass
            @staticmethod
            def s(a): pass
        """
    )
    assert parameter_counts(source) == {"f": 6, "C.m": 1, "C.k": 2, "C.s": 1}
    many = "def g(" + ", ".join(f"p{i}" for i in range(MAX_PARAMETERS + 1)) + "): pass\n"
    assert parameter_counts(many) == {"g": MAX_PARAMETERS + 1}


# --------------------------------------------------------------------------------- benchmarks (issue 20)
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
SPEC_NAMES = {"tau", "image_size", "crop_source", "normalization", "default_normalization", "box_rule",
              "heatmap_upsample", "localizer_input", "box_margin"}  # fmt: skip


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


def _named(node: ast.AST, suffix: str) -> bool:
    """Whether ``node`` holds a name or attribute ending in ``suffix`` (``tau``, ``spec.tau``, ``int(tau)``)."""
    return any(
        (getattr(n, "id", None) or getattr(n, "attr", None) or "").endswith(suffix) for n in ast.walk(node)
    )


def _number(node: ast.AST, *values: float) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
        and node.value in values
    )


def tau_range_checks(source: str) -> list[int]:
    """Lines of ``source`` that check τ against its bounds 0 and 1, in any spelling: a comparison
    (``0.0 <= tau < 1.0``, ``tau >= 1``, ``not 0 <= cfg.tau < 1``) or pydantic bounds on a ``tau`` field
    (``tau: float = Field(ge=0, lt=1)``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            ordered = any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in node.ops)
            if (
                ordered
                and any(_named(o, "tau") for o in operands)
                and any(_number(o, 0, 1) for o in operands)
            ):
                lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bounds = {
                k.arg
                for k in node.value.keywords
                if k.arg in ("ge", "gt", "le", "lt") and _number(k.value, 0, 1)
            }
            if bounds and any(_named(t, "tau") for t in targets):
                lines.append(node.lineno)
    return sorted(set(lines))


def crop_source_derivations(source: str) -> list[int]:
    """Lines of ``source`` that compute twice an image size, in any spelling (``2 * image_size``,
    ``cfg.dataset.image_size * 2``, ``size + size``, ``image_size << 1``), or call ``crop_source_size``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp):
            left, right, op = node.left, node.right, node.op
            doubled = (
                (isinstance(op, ast.Mult) and (_number(left, 2) or _number(right, 2)))
                or (isinstance(op, ast.Add) and ast.dump(left) == ast.dump(right))
                or (isinstance(op, ast.LShift) and _number(right, 1))
            )
            if doubled and (_named(left, "image_size") or _named(right, "image_size")):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and _named(node.func, "crop_source_size"):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_crop_source_and_tau_range_have_one_definition():
    """The crop source default (2 × image size) and τ's range are computed in elope/spec.py only (checked
    on the syntax tree, so another spelling of the same computation is caught too)."""
    found = {
        module_name(p): (tau, crop)
        for p in PACKAGE.rglob("*.py")
        if module_name(p) != "elope.spec"
        if any((tau := tau_range_checks(p.read_text()), crop := crop_source_derivations(p.read_text())))
    }
    assert found == {}


def test_the_one_definition_checks_can_fail():
    """Each spelling of τ's range check and of the crop source default is seen; a threshold is not."""
    taus = [
        "ok = 0.0 <= tau < 1.0",
        "if tau < 0 or tau >= 1: raise ValueError",
        "if not 0 <= cfg.model.tau < 1: raise ValueError",
        "tau: float = Field(0.3, ge=0.0, lt=1.0)",
    ]
    assert [tau_range_checks(s) for s in taus] == [[1], [1], [1], [1]]
    assert tau_range_checks("mask = normalised > tau\nlow, high = 0, 1\n") == []
    crops = [
        "n = 2 * int(image_size)",
        "n = cfg.dataset.image_size * 2",
        "n = image_size + image_size",
        "n = spec.image_size << 1",
        "n = crop_source_size(448)",
    ]
    assert [crop_source_derivations(s) for s in crops] == [[1]] * len(crops)
    assert crop_source_derivations("n = 2 * batch_size\nm = image_size + 1\n") == []


def keys_named(data: object, name: str, path: str = "") -> list[str]:
    """Dotted paths of every key ``name`` in nested mappings."""
    if not isinstance(data, dict):
        return []
    found = [f"{path}{name}"] if name in data else []
    for key, value in data.items():
        found += keys_named(value, name, f"{path}{key}.")
    return found


def test_tau_and_the_spec_are_stored_once_in_model_json(tmp_path: Path):
    """model.json stores the model's spec (τ, sides, box rule, upsampling, margin, normalisation) once,
    under ``spec`` (the recipe under ``config`` keeps its own ``model.tau`` setting, which
    ``model.tau_select`` may replace); elope reads them from there."""
    import json

    from elope.config import load_config
    from elope.engine.run_spec import run_spec
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
        assert keys_named(outside_recipe, field) == [f"spec.{field}"], field
    assert saved["spec"]["tau"] == 0.45 and saved["config"]["model"]["tau"] == cfg.model.tau != 0.45
    assert saved["spec"] == model.spec.to_dict()  # written by the spec, read by ModelSpec.from_dict
    saved["config"]["model"]["tau"] = 0.9  # the recipe's setting is not read back
    (tmp_path / "model.json").write_text(json.dumps(saved))
    assert load_model(tmp_path)[0].spec.tau == 0.45
    assert keys_named({"a": {"tau": 1}, "tau": 2}, "tau") == ["tau", "a.tau"]
