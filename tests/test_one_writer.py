"""The writer is the only way the package writes a file (issue 26, section 1; ``elope/writer.py``).

Every module of ``elope/`` is parsed with ``ast``. Outside the writer (``elope/writer.py``,
``elope/written.py``, and ``elope/outputs.py``, whose checks make and remove a test file):

* no call that writes a file by itself: ``Path.write_text`` / ``write_bytes`` / ``touch`` / ``mkdir``,
  ``open(..., "w" | "a" | "x" | "+")``, ``os.open``, ``os.replace`` / ``rename``, ``shutil.copy*`` /
  ``move``, ``tempfile.mkstemp``, TensorBoard's ``SummaryWriter``;
* a library that writes a file by name or into a file object (``torch.save``, ``torch.jit.save``,
  ``torch.onnx.export``, ``onnx.save``, ``save_file``, ``np.savez``, ``savefig``, PIL's ``save``,
  ``json.dump``, ``os.link``, ``shutil.copyfile``) is called only inside ``with writer.write_with(...)`` or
  ``with writer.open_write(...)``: it writes the writer's temporary file.

:data:`ALLOWED` lists the few exceptions, each with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "elope"
#: The writer, and the checks of an output path it runs before the work (a test file made and removed).
WRITER_MODULES = {"elope.writer", "elope.written", "elope.outputs"}
#: The scripts behind the research record (``python -m elope.research.experiments.NAME``): run by hand into
#: a folder of their own, never by a command of elope, so outside the rule (they copy run folders whole).
SCRIPTS = "elope.research.experiments."

#: Calls that write (or make) a file themselves: never outside the writer.
WRITES = {
    "write_text", "write_bytes", "touch", "mkdir", "makedirs", "os.open", "os.replace", "os.rename",
    "shutil.copy", "shutil.copy2", "shutil.copytree", "shutil.move", "mkstemp", "SummaryWriter",
    "symlink_to", "hardlink_to", "os.symlink",
}  # fmt: skip
#: Calls that write into a path or a file object they are given: only the writer's temporary one.
SINKS = {
    "torch.save", "jit.save", "onnx.export", "onnx.save", "save_file", "np.savez", "np.savez_compressed",
    "np.save", "savefig", "save", "json.dump", "os.link", "shutil.copyfile", "tofile",
}  # fmt: skip
WRITER_BLOCKS = {"writer.write_with", "writer.open_write"}

#: (module, call) -> why it does not go through the writer.
ALLOWED = {
    ("elope.runs.lock", "os.open"): "reads who holds a run folder's lock (opened read-only, flock shared)",
    ("elope.runs.lock", "mkdir"): "the run folder made for its lock (removed again if left empty)",
    ("elope.engine.train", "os.replace"): "a generated data set (a folder) moved into place as a whole",
    ("elope.runs.metrics_log", "SummaryWriter"): "TensorBoard's event files: TensorBoard's own writer, "
    "in the run's own RUN/tensorboard",
    ("elope.tasks.report_html", "savefig"): "into an io.BytesIO (a picture inlined in the page)",
    ("elope.serve.model", "save"): "into an io.BytesIO (a heatmap answered over HTTP)",
    ("elope.commands.embed", "save"): "Embeddings.save, which writes through writer.open_write",
}


def call_name(node: ast.Call) -> str:
    """``os.replace``, ``np.savez``, ``savefig`` (an attribute call on anything else: its last name)."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id in (
            "os",
            "shutil",
            "np",
            "json",
            "torch",
            "writer",
        ):
            return f"{func.value.id}.{func.attr}"
        if (
            isinstance(func.value, ast.Attribute)
            and func.value.attr in ("jit", "onnx")
            and func.attr
            in (
                "save",
                "export",
            )
        ):
            return f"{func.value.attr}.{func.attr}"
        return func.attr
    return ""


def _open_for_writing(node: ast.Call) -> bool:
    mode = (
        node.args[1]
        if len(node.args) > 1
        else next((k.value for k in node.keywords if k.arg == "mode"), None)
    )
    return (
        isinstance(mode, ast.Constant)
        and isinstance(mode.value, str)
        and any(c in mode.value for c in "wax+")
    )


def writes_outside_the_writer(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` of every write of ``source`` that does not go through the writer."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, (ast.With, ast.AsyncWith)):
            names = {
                call_name(item.context_expr) for item in node.items if isinstance(item.context_expr, ast.Call)
            }
            inside = inside or bool(names & WRITER_BLOCKS)
        if isinstance(node, ast.Call):
            name = call_name(node)
            writes = name in WRITES or (name == "open" and _open_for_writing(node))
            if writes or (name in SINKS and node.args and not inside):
                found.append((node.lineno, name))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(source), False)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_writer_is_the_only_way_to_write_a_file() -> None:
    found = []
    used = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if module in WRITER_MODULES or module.startswith(SCRIPTS):
            continue
        for line, name in writes_outside_the_writer(path.read_text()):
            if (module, name) in ALLOWED:
                used.add((module, name))
            else:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
    assert found == [], "write through elope.writer (or add to ALLOWED, with the reason):\n" + "\n".join(
        found
    )
    assert used == set(ALLOWED), f"allowed but not used any more: {set(ALLOWED) - used}"


def test_the_scan_can_fail() -> None:
    source = """
import json, os, shutil, numpy as np, torch
from pathlib import Path
from elope import writer
Path("a").write_text("x")
open("b", "w").write("x")
open("c").read()
os.replace("d", "e")
torch.save({}, "f")
np.savez("g", a=1)
fig.savefig("h", format="png")
with writer.write_with("i") as tmp:
    fig.savefig(tmp, format="png")
    torch.save({}, tmp)
with writer.open_write("j", "wb") as f:
    np.savez(f, a=1)
image.save("k", format="JPEG")
torch.onnx.export(m, x, "l")
"""
    assert writes_outside_the_writer(source) == [
        (5, "write_text"),
        (6, "open"),
        (8, "os.replace"),
        (9, "torch.save"),
        (10, "np.savez"),
        (11, "savefig"),
        (17, "save"),
        (18, "onnx.export"),
    ]
