"""Draw the import graph of the repository by layer, measured from the code by the architecture test's
own functions (``tests/test_architecture.py``: the modules, their imports, the layers), and write it as a
PNG: ``python tests/draw_imports.py docs/images/imports.png``.

One box per layer, bottom to top in the order of ``LAYERS`` (a layer may import only the layers below it),
its width the layer's lines of code; one arrow per pair of layers where a module of the upper imports a
module of the lower, its width the number of such module imports. The title states what was measured: the
modules, the imports between them, the upward imports (none allowed) and whether there is a circle.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from test_architecture import (  # tests/ is on sys.path when this file runs (and under pytest)
    LAYERS,
    find_cycle,
    graph,
    layer_of,
    module_name,
    source_files,
    upward_imports,
)


def measure() -> dict:
    """Per layer: modules and lines; per pair of layers: module imports; the totals and the checks."""
    edges = graph()
    lines: Counter[int] = Counter()
    modules: Counter[int] = Counter()
    for path in source_files():
        layer = layer_of(module_name(path))
        lines[layer] += len(path.read_text().splitlines())
        modules[layer] += 1
    pairs: Counter[tuple[int, int]] = Counter(
        (layer_of(s), layer_of(t))
        for s, targets in edges.items()
        for t in targets
        if layer_of(s) != layer_of(t)
    )
    return {
        "lines": lines,
        "modules": modules,
        "pairs": pairs,
        "edges": sum(len(t) for t in edges.values()),
        "upward": upward_imports(edges),
        "cycle": find_cycle(edges),
    }


def draw(out: Path) -> dict:
    """Write the drawing to ``out``; return what :func:`measure` found."""
    m = measure()
    n = len(LAYERS)
    widest = max(m["lines"].values())
    fig, ax = plt.subplots(figsize=(11, 0.9 * n + 1.6))
    ax.set_xlim(-5.6, 10.6)
    ax.set_ylim(-0.8, n)
    ax.axis("off")
    for i, (name, _) in enumerate(LAYERS):
        width = 2.0 + 8.0 * m["lines"][i] / widest
        ax.add_patch(
            FancyBboxPatch((0, i), width, 0.55, boxstyle="round,pad=0.02", fc="#dbe8f5", ec="#33557a")
        )
        ax.text(0.15, i + 0.27, name, va="center", fontsize=11, weight="bold")
        ax.text(width + 0.15, i + 0.27, f"{m['modules'][i]} modules, {m['lines'][i]:,} lines", va="center")
    for (upper, lower), count in sorted(m["pairs"].items()):
        span = upper - lower
        colour = "#b22222" if span < 0 else "#555555"
        ax.add_patch(
            FancyArrowPatch(
                (-0.1, upper + 0.27),
                (-0.1, lower + 0.27),
                connectionstyle=f"arc3,rad={0.08 + 0.04 * abs(span)}",
                arrowstyle="-|>",
                mutation_scale=8,
                lw=0.4 + 0.25 * count**0.5,
                color=colour,
                alpha=0.55,
            )
        )
    verdict = "no circle" if m["cycle"] is None else "a circle: " + " -> ".join(m["cycle"])
    ax.set_title(
        f"Imports of elope/ and benchmarks/ by layer, measured from the code: {sum(m['modules'].values())} "
        f"modules, {m['edges']} imports between them;\n{len(m['pairs'])} arrows between layers (width: "
        f"module imports), {len(m['upward'])} running up, {verdict}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return m


if __name__ == "__main__":
    found = draw(Path(sys.argv[1] if len(sys.argv) > 1 else "imports.png"))
    print(f"{len(found['pairs'])} arrows, {len(found['upward'])} upward, circle: {found['cycle']}")
