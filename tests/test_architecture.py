"""Imports flow one way (docs/architecture.md, "Layers"): no cycle between files or packages, never upwards.

The graph is read from the source with `ast` (every import statement, also those inside functions), so it
sees what running code would import, without importing anything.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "romp_hydra"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# Lower index = lower layer. A module may import from its own layer (without a cycle) and from layers below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("geometry", "body", "config", "batch"),
    ("data", "models", "losses", "metrics", "viz"),
    ("training", "evaluation", "tracking", "sweeps"),
    ("train", "evaluate", "predict", "preflight", "compare"),
)
# Command-line tools inside a package that sit at the entry-point layer (they may use anything below it, and
# nothing may import them). body/convert.py is not one: the body model reads converted files through it.
ENTRY_POINT_MODULES = (
    "romp_hydra.data.check",
    "romp_hydra.data.pack",
    "romp_hydra.models.import_romp",
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module a dotted name refers to: itself, or the closest enclosing module (`pkg.mod.Class` -> `pkg.mod`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of the package that `path` imports (any depth: function-level imports count)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: Iterable[str] = ()
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base_parts = name.split(".") if is_package else name.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    found.add(resolved)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {name: imports_of(path, name, modules) for name, path in files.items()}


def group_of(module: str) -> str:
    """The package directly below romp_hydra (`romp_hydra.models.parser` -> `models`); '' for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int:
    if module in ENTRY_POINT_MODULES:
        return len(LAYERS) - 1
    group = group_of(module)
    if group == "":
        return 0  # romp_hydra/__init__.py
    for index, names in enumerate(LAYERS):
        if group in names:
            return index
    raise AssertionError(f"{module}: package '{group}' has no layer; add it to LAYERS in {__file__}")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Packages (and top-level modules) importing each other; entry-point modules stand on their own."""

    def node(module: str) -> str:
        return module if module in ENTRY_POINT_MODULES else group_of(module)

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(node(module), set()).update(node(t) for t in targets if node(t) != node(module))
    return packages


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def problems(root: Path = PACKAGE_DIR) -> list[str]:
    graph = import_graph(root)
    found = [f"upward import: {line}" for line in upward_imports(graph)]
    for name, g in (("file", graph), ("package", package_graph(graph))):
        cycle = find_cycle(g)
        if cycle:
            found.append(f"{name} import cycle: {' -> '.join(cycle)}")
    return found


def test_imports_flow_one_way_without_cycles():
    found = problems()
    assert not found, "\n".join(found)


def test_the_checker_sees_cycles_and_upward_imports(tmp_path):
    """The checker itself: a made-up package with a cycle and an upward import is caught."""
    root = tmp_path / PACKAGE
    for package, source in {
        "geometry": "from romp_hydra.models.parser import parse\n",  # bottom imports a middle layer
        "models": "",
        "training": "def f():\n    from romp_hydra.evaluation import runner\n",  # function-level import
        "evaluation": "",
    }.items():
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(source)
    (root / "__init__.py").write_text("")
    (root / "models" / "parser.py").write_text("")
    (root / "evaluation" / "runner.py").write_text("from ..training import f\n")  # relative import
    found = problems(root)
    assert any(line.startswith("upward import: romp_hydra.geometry (layer 0) imports romp_hydra.models.parser")
               for line in found), found
    assert any("file import cycle: romp_hydra.evaluation.runner -> romp_hydra.training -> "
               "romp_hydra.evaluation.runner" in line for line in found), found
    assert any("package import cycle: evaluation -> training -> evaluation" in line for line in found), found
