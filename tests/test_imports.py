"""The package's import graph has no cycles: every module's imports (at the top and inside functions, which run
all the same, only later) are read from its source, and a cycle between tinylm's modules fails the test with
the modules on it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tinylm"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The tinylm modules that `path` imports (`from . import x` names the submodule x when there is one)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    # a name imported from a module is that module's (or its submodule's); keep what is a tinylm module
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imports_of(p, modules) for p in paths}
    # importing a.b runs a/__init__.py first, but a package's __init__ importing its own submodules is how a
    # package is put together, not a cycle: an edge from a module to the package that holds it is left out
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules, the first repeated at the end), or None."""
    colour: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if colour.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in colour and (cycle := visit(dep)):
                return cycle
        path.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    # the walk sees the package
    assert len(graph) > 40 and graph["tinylm.publishing.hub"] >= {"tinylm.loading", "tinylm.run.layout"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def wing_of(module: str) -> str:
    """The part of the package a module belongs to: its folder under tinylm/, or the module itself at the top."""
    return ".".join(module.split(".")[:2])


def test_the_wings_import_only_wings_below_them():
    """Folded into its wings (data, models, run, machine, lab, ... and the top-level modules), the import graph still
    has no circle: each wing stands on the ones below it, and no import runs back up."""
    graph: dict[str, set[str]] = {}
    for module, imported in import_graph().items():
        graph.setdefault(wing_of(module), set()).update(wing_of(m) for m in imported if wing_of(m) != wing_of(module))
    assert {"tinylm.run", "tinylm.machine", "tinylm.lab", "tinylm.training"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "wings importing each other: " + " -> ".join(cycle)
    assert not graph["tinylm.run"] & {"tinylm.config", "tinylm.data", "tinylm.models", "tinylm.loading"}


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_local_run_loading_knows_nothing_of_the_hub():
    """tinylm.loading loads a local folder; tinylm.publishing.hub resolves a Hub id first and then calls it."""
    graph = import_graph()
    assert "tinylm.publishing.hub" not in graph["tinylm.loading"]
    assert "tinylm.loading" in graph["tinylm.publishing.hub"]
    assert "tinylm.publishing.hub" not in graph["tinylm.publishing.export"]


def test_the_package_exports_what_it_lists():
    """tinylm.__all__ (written out for linters) names exactly the lazily loaded exports, and each one loads."""
    import tinylm

    assert set(tinylm.__all__) == {"__version__", *tinylm._EXPORTS}
    for name in tinylm._EXPORTS:
        if name != "serve":  # the playground needs gradio, an optional extra
            assert getattr(tinylm, name) is not None
