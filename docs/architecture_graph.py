"""Draw Chameleon's package import graph to docs/architecture.png (and print it as text).

The graph is read from the source with the standard library's ``ast``: every
``import`` and ``from ... import`` of ``harness.*`` or ``optimizer.*``, at
module level or inside functions (the lazy ones), collapsed to packages
(``harness.lut``, ``harness.runners``, ``optimizer.latency``, ...).  The
harness's small shared modules (errors, atomic writes, paths, text files) are
one node, ``harness (base)``; nearly every package imports it, so its arrows
are counted in its label instead of drawn.  Matplotlib draws it; no graphviz.

The optimizer is drawn above the harness: every arrow between the two halves
must point down (the optimizer imports the harness's vocabulary, never the
reverse); one pointing up is drawn red.  Within a half, a package sits above
everything it imports; packages that import each other (a circle) share a row.

    .venv/bin/python docs/architecture_graph.py            # writes docs/architecture.png
    .venv/bin/python docs/architecture_graph.py --text     # prints the edges only
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HALVES = ("harness", "optimizer")
# Modules too small and too widely used to be worth a node each.
BASE = {"errors", "atomic", "paths", "textfiles"}
BASE_NODE = "harness (base)"
# Drawing units are inches: box width, distance between boxes in a row, distance between rows.
BOX_W, BOX_H, COLUMN, ROW = 2.05, 0.42, 2.45, 0.85
# Entry points (``python -m harness``) and programs run on the simulated phone: not part of the import graph.
SKIP = {"harness.__main__", "optimizer.__main__",
        "harness.fake_device.benchmark_model_script", "harness.fake_device.ort_perf_test_script"}


@dataclass
class Edge:
    importers: set[str] = field(default_factory=set)  # modules of the source package that import the target
    module_level: bool = False  # at least one import runs when the module loads (else: only inside functions)


# ------------------------------------------------------------------ reading the graph
def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for half in HALVES for p in sorted((ROOT / half).rglob("*.py"))
             if "__pycache__" not in p.parts}
    return {name: path for name, path in found.items() if name not in SKIP}


def half_of(node: str) -> str:
    return node.split(".")[0].split(" ")[0]


def node_of(module: str) -> str | None:
    """The package node a module belongs to: ``harness.lut.store`` -> ``harness.lut``."""
    parts = module.split(".")
    if parts[0] not in HALVES or len(parts) == 1:
        return None  # not ours, or the half's own __init__ (a docstring)
    if parts[0] == "harness" and parts[1] in BASE:
        return BASE_NODE
    return ".".join(parts[:2])


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> dict[str, bool]:
    """harness/optimizer modules a file imports -> whether some import of it is at module level.

    ``from a.b import c`` counts as a.b.c when that is a module, else as a.b; relative imports are resolved.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:  # a file being edited: left out, said so
        print(f"warning: {path.relative_to(ROOT)} skipped: {err}", file=sys.stderr)
        return {}
    is_package = path.name == "__init__.py"
    found: dict[str, bool] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for target in names:
            if target.split(".")[0] in HALVES:
                found[target] = found.get(target, False) or not in_function
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def package_graph() -> tuple[set[str], dict[tuple[str, str], Edge]]:
    """Package nodes, and edges (importer package, imported package)."""
    known = modules()
    nodes: set[str] = set()
    edges: dict[tuple[str, str], Edge] = defaultdict(Edge)
    for name, path in known.items():
        source = node_of(name)
        if source is None:
            continue
        nodes.add(source)
        for target_module, module_level in imported_modules(name, path, known).items():
            target = node_of(target_module)
            if target is None or target == source:
                continue
            nodes.add(target)
            edge = edges[(source, target)]
            edge.importers.add(name)
            edge.module_level |= module_level
    return nodes, dict(edges)


# ------------------------------------------------------------------ layout
def components(nodes: set[str], edges: dict[tuple[str, str], Edge]) -> dict[str, int]:
    """Strongly connected components (Tarjan): packages that import each other, directly or not."""
    out = defaultdict(list)
    for a, b in edges:
        out[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comp: dict[str, int] = {}

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(out[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            label = len(set(comp.values()))
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp[w] = label
                if w == v:
                    break

    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return comp


def rows(nodes: set[str], edges: dict[tuple[str, str], Edge]) -> dict[str, int]:
    """Row per node, 0 at the bottom: the harness below the optimizer, each package above what it imports."""
    comp = components(nodes, edges)
    row: dict[str, int] = {}
    offset = 0
    for half in HALVES:
        mine = {n for n in nodes if half_of(n) == half}
        below = defaultdict(set)  # component -> components it imports within the half
        for a, b in edges:
            if a in mine and b in mine and comp[a] != comp[b] and b != BASE_NODE:
                below[comp[a]].add(comp[b])
        level: dict[int, int] = {}

        def depth(c: int) -> int:
            if c not in level:
                level[c] = max((depth(d) + 1 for d in below[c]), default=0)
            return level[c]

        lift = 1 if BASE_NODE in mine else 0  # the base sits alone on the bottom row of its half
        for n in mine:
            row[n] = offset if n == BASE_NODE else offset + lift + depth(comp[n])
        offset = max(row[n] for n in mine) + 2  # one empty row between the halves
    return row


def layout(nodes: set[str], edges: dict[tuple[str, str], Edge]) -> dict[str, tuple[float, float]]:
    """x, y per node: rows from :func:`rows`; order within a row by barycentre sweeps, then by adjacent
    swaps while they shorten the arrows (fewer crossings, fewer arrows behind boxes)."""
    row = rows(nodes, edges)
    by_row: dict[int, list[str]] = defaultdict(list)
    for n in sorted(nodes):
        by_row[row[n]].append(n)
    neighbours = defaultdict(set)
    for a, b in edges:
        if BASE_NODE not in (a, b):
            neighbours[a].add(b)
            neighbours[b].add(a)
    x: dict[str, float] = {}
    for r, members in by_row.items():
        for i, n in enumerate(members):
            x[n] = (i + 0.5) / len(members)
    for sweep in range(12):
        order = sorted(by_row) if sweep % 2 == 0 else sorted(by_row, reverse=True)
        for r in order:
            members = by_row[r]
            members.sort(key=lambda n: (sum(x[m] for m in neighbours[n]) / len(neighbours[n])
                                        if neighbours[n] else x[n], n))
            for i, n in enumerate(members):
                x[n] = (i + 0.5) / len(members)

    def place() -> dict[str, tuple[float, float]]:
        pos = {}
        for r, members in by_row.items():
            for i, n in enumerate(members):
                # rows centred, boxes COLUMN apart; odd rows shifted a little so vertical arrows do not line up
                pos[n] = ((i - (len(members) - 1) / 2) * COLUMN + (0.3 if r % 2 else -0.3), r * ROW)
        return pos

    def cost() -> float:
        """Horizontal length of the drawn arrows, weighted by their importers: short arrows cross less."""
        pos = place()
        return sum(len(e.importers) * abs(pos[a][0] - pos[b][0]) for (a, b), e in edges.items() if b != BASE_NODE)

    best = cost()
    improved = True
    while improved:  # adjacent swaps while they shorten the arrows
        improved = False
        for members in by_row.values():
            for i in range(len(members) - 1):
                members[i], members[i + 1] = members[i + 1], members[i]
                trial = cost()
                if trial < best - 1e-9:
                    best, improved = trial, True
                else:
                    members[i], members[i + 1] = members[i + 1], members[i]
    pos = place()
    return pos


# ------------------------------------------------------------------ drawing
def arc_bend(start: tuple[float, float], end: tuple[float, float],
             boxes: list[tuple[tuple[float, float], float, float]], same_row: bool) -> float:
    """The ``arc3`` bend of an arrow that passes behind as few other boxes as it can (straight when free).

    matplotlib's arc3 is the quadratic Bézier through the control point midpoint + rad·(dy, −dx);
    the drawing's units are the same inches on both axes, so the test here matches what is drawn.
    """
    (x1, y1), (x2, y2) = start, end
    margin = 0.08

    def hidden(rad: float) -> int:
        """How much of the arrow (in samples) runs behind other boxes."""
        cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
        behind = 0
        for k in range(1, 100):
            t = k / 100
            px = (1 - t) ** 2 * x1 + 2 * (1 - t) * t * cx + t * t * x2
            py = (1 - t) ** 2 * y1 + 2 * (1 - t) * t * cy + t * t * y2
            behind += any(abs(px - bx) < w / 2 + margin and abs(py - by) < h / 2 + margin
                          for (bx, by), w, h in boxes)
        return behind

    candidates = [0.45, -0.45] if same_row else [0.0, 0.12, -0.12, 0.22, -0.22, 0.32, -0.32, 0.42, -0.42,
                                                  0.55, -0.55]
    return min(candidates, key=lambda rad: (hidden(rad), abs(rad)))


def label_of(node: str, base_users: int) -> str:
    if node == BASE_NODE:
        return f"harness: errors, atomic,\npaths, textfiles\n(imported by {base_users} packages)"
    return node


def draw(nodes: set[str], edges: dict[tuple[str, str], Edge], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    pos = layout(nodes, edges)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    span_x, top = max(xs) - min(xs), max(ys)
    width, height = span_x + BOX_W + 1.0, top + 2.6
    fig = plt.figure(figsize=(max(width, 11.0), height))
    ax = fig.add_axes((0, 0, 1, 1))
    colours = {"harness": ("#dbeafe", "#1d4ed8"), "optimizer": ("#dcfce7", "#15803d")}
    box_w, box_h = BOX_W, BOX_H
    base_users = sum(1 for (a, b) in edges if b == BASE_NODE)

    # the two halves as two groups
    titles = {"harness": "harness/   bench: measures devices into LUTs",
              "optimizer": "optimizer/   optimize: decides, from LUTs"}
    for half in HALVES:
        hx = [pos[n][0] for n in nodes if half_of(n) == half]
        hy = [pos[n][1] for n in nodes if half_of(n) == half]
        fill, edge = colours[half]
        ax.add_patch(FancyBboxPatch((min(xs) - box_w / 2 - 0.3, min(hy) - box_h / 2 - 0.25),
                                    span_x + box_w + 0.6, max(hy) - min(hy) + box_h + 0.85,
                                    boxstyle="round,pad=0.02,rounding_size=0.2", facecolor=fill, alpha=0.3,
                                    edgecolor=edge, linewidth=1.5, zorder=0))
        ax.text(min(xs) - box_w / 2 - 0.1, max(hy) + box_h / 2 + 0.32, titles[half], ha="left", va="center",
                fontsize=13, fontweight="bold", color=edge)

    boxes = {}
    for n, (x, y) in pos.items():
        fill, edge = colours[half_of(n)]
        height = box_h * (1.75 if n == BASE_NODE else 1.0)
        boxes[n] = FancyBboxPatch((x - box_w / 2, y - height / 2), box_w, height,
                                  boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=fill,
                                  edgecolor=edge, linewidth=1.3, zorder=3)
        ax.add_patch(boxes[n])
        label = label_of(n, base_users)
        ax.text(x, y, label, ha="center", va="center", fontsize=10.5 if "\n" not in label else 8.5,
                fontweight="bold", zorder=4, family="DejaVu Sans Mono")

    for (a, b), edge in sorted(edges.items()):
        if b == BASE_NODE:
            continue  # counted in the node's label
        (x1, y1), (x2, y2) = pos[a], pos[b]
        if half_of(a) == "harness" and half_of(b) == "optimizer":
            colour, alpha = "#dc2626", 0.95  # the forbidden direction
        elif half_of(a) != half_of(b):
            colour, alpha = "#ea580c", 0.55
        else:
            colour, alpha = "#334155", 0.7
        others = [(pos[n], box_w, box_h * (1.75 if n == BASE_NODE else 1.0)) for n in pos if n not in (a, b)]
        rad = arc_bend((x1, y1), (x2, y2), others, same_row=abs(y1 - y2) < 1e-9)
        count = len(edge.importers)
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), patchA=boxes[a], patchB=boxes[b],
                                     arrowstyle="-|>", mutation_scale=13, connectionstyle=f"arc3,rad={rad}",
                                     color=colour, alpha=alpha, linewidth=0.8 + 0.3 * min(count, 6),
                                     linestyle="-" if edge.module_level else (0, (4, 3)), zorder=2))

    legend = ("arrow: importer → imported package; width: how many of its modules import it\n"
              "solid: imported at module level    dashed: only inside functions (lazy)\n"
              "grey: within a half    orange: the optimizer importing the harness    "
              "red: the harness importing the optimizer (must not exist)\n"
              "a package sits above what it imports within its half; "
              "two packages on one row joined by arcs import each other\n"
              "made by docs/architecture_graph.py from the source (ast)")
    ax.text(min(xs) - box_w / 2 - 0.3, -0.55, legend, ha="left", va="top", fontsize=9.5, color="#334155",
            linespacing=1.5)
    left = min(xs) - box_w / 2 - 0.5
    ax.set_xlim(left, left + max(width, 11.0))
    ax.set_ylim(-1.6, top + 1.0)
    ax.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    try:  # a palette PNG is a fraction of the size and looks the same (Pillow comes with matplotlib)
        from PIL import Image

        with Image.open(out) as image:
            small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(out, optimize=True)
    except ImportError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    parser.add_argument("--text", action="store_true", help="print the edges, draw nothing")
    args = parser.parse_args(argv)
    nodes, edges = package_graph()
    for (a, b), edge in sorted(edges.items()):
        where = "module level" if edge.module_level else "lazy only"
        print(f"{a:22} -> {b:22} {len(edge.importers):2} module(s), {where}")
    backwards = sorted((a, b) for a, b in edges if half_of(a) == "harness" and half_of(b) == "optimizer")
    if backwards:
        print(f"warning: the harness imports the optimizer: {backwards}", file=sys.stderr)
    comp = components(nodes, edges)
    for c in sorted(set(comp.values())):
        members = sorted(n for n in nodes if comp[n] == c)
        if len(members) > 1:
            print(f"circle: {' <-> '.join(members)}", file=sys.stderr)
    if not args.text:
        print(f"wrote {draw(nodes, edges, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
