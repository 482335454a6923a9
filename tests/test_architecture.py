"""The shape of the code (issue 14): import direction, no import circle, module size, torch only where it trains.

Read with the standard library's ``ast`` from the source files, so these
checks see lazy imports inside functions as well as module-level ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "optimizer")
MAX_MODULE_LINES = 600
# Modules run as programs on the (simulated) phone, never imported by Chameleon.
DEVICE_SCRIPTS = {"harness.fake_device.benchmark_model_script", "harness.fake_device.ort_perf_test_script"}
# The PyTorch twins of our networks and the DNAS supernet subclass torch.nn.Module, so torch comes with them; nothing
# else may load it.
TORCH_MODULES = {"optimizer.training.torch_networks", "optimizer.dnas.supernet"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


MODULES = _modules()


def _imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    """The harness/optimizer modules a file imports (``from a.b import c`` is a.b.c when that is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def test_the_harness_never_imports_the_optimizer() -> None:
    offenders = sorted(f"{name} imports {target}" for name, path in MODULES.items() if name.startswith("harness")
                       for target in _imports(path) if target.startswith("optimizer"))
    assert not offenders, "\n".join(offenders)


def test_every_import_names_a_module_that_exists() -> None:
    missing = sorted(f"{name} imports {target}" for name, path in MODULES.items() for target in _imports(path)
                     if target not in MODULES)
    assert not missing, "\n".join(missing)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, or None (depth-first search, colouring nodes)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_between_modules() -> None:
    # Lazy imports inside functions count: a circle closed by one is still a circle a reader has to untangle.
    graph = {name: {t for t in _imports(path) if t != name} for name, path in MODULES.items()}
    circle = _cycle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def _package(module: str) -> str:
    """The package a module belongs to (harness.lut.store -> harness.lut); top-level modules are their own."""
    path = MODULES[module]
    return module if path.name == "__init__.py" or module.count(".") < 2 else module.rsplit(".", 1)[0]


def test_no_import_circle_between_packages() -> None:
    # One level up: if accuracy imports training, training must not import accuracy back, even lazily.
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        here = _package(name)
        graph.setdefault(here, set()).update(_package(t) for t in _imports(path) if t in MODULES and _package(t) != here
                                             and not _package(t).startswith(here + ".") and not here.startswith(_package(t) + "."))
    circle = _cycle(graph)
    assert circle is None, "import circle between packages: " + " -> ".join(circle)


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("folder", ["harness", "optimizer", "tests", "benchmarks", "docs"])
def test_no_module_over_600_lines(folder: str) -> None:
    long = sorted(f"{p.relative_to(ROOT)}: {n} lines" for p in (ROOT / folder).rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES)
    assert not long, "\n".join(long)


def test_every_package_says_what_it_holds() -> None:
    undocumented = sorted(name for name, path in MODULES.items() if path.name == "__init__.py"
                          and not ast.get_docstring(ast.parse(path.read_text())))
    assert not undocumented, undocumented


def _loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint('LOADED:', *sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("LOADED:"))
    return set(line.split()[1:])


def test_torch_is_imported_at_module_level_only_by_the_torch_networks() -> None:
    offenders = sorted(name for name, path in MODULES.items() for node in ast.parse(path.read_text()).body
                       if isinstance(node, (ast.Import, ast.ImportFrom)) and name not in TORCH_MODULES
                       and any((a.name if isinstance(node, ast.Import) else node.module or "").split(".")[0] == "torch"
                               for a in node.names))
    assert not offenders, offenders


def test_importing_any_other_module_loads_no_torch() -> None:
    # Torch is imported inside the functions that train, build or export networks, never by importing a module.
    importable = sorted(name for name in MODULES if name not in DEVICE_SCRIPTS | TORCH_MODULES
                        and not name.endswith("__main__"))
    loaded = _loaded_after("\n".join(f"import {name}" for name in importable))
    assert "torch" not in loaded
    assert "executorch" not in loaded


@pytest.mark.parametrize("entry", ["harness.cli.app", "optimizer.cli.app"])
def test_help_loads_no_runtime_and_no_training_library(entry: str) -> None:
    # `bench --help` / `optimize --help` stay fast because a command's libraries load when it runs.
    loaded = _loaded_after(f"import sys\nsys.argv = ['prog', '--help']\nfrom {entry} import app\n"
                           "try:\n    app()\nexcept SystemExit:\n    pass")
    heavy = {"torch", "onnxruntime", "onnx", "sklearn", "scipy", "ai_edge_litert", "matplotlib"}
    assert not loaded & heavy, sorted(loaded & heavy)
