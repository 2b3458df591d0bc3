"""No import cycles in ``app/`` and ``models/`` (issue 14, item 10).

The graph: one node per module (``app.services.text``; a package is its ``__init__``), one edge per import
statement anywhere in the module, read with :mod:`ast` (nothing is imported): at module level, in class
bodies, under ``if TYPE_CHECKING:``, and inside functions (lazy imports) alike. A type-only or lazy import
is still a dependency of the design (the issue's two cycles ran through one of each:
``state <-> batching`` under TYPE_CHECKING, ``services.backend -> cluster.client`` inside a function), so
none is left out. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module of ours, else to
``pkg``; relative imports are resolved; only edges between our own modules (``app.*``, ``models.*``) count.
Importing ``pkg.mod`` is not counted as importing ``pkg`` (its ``__init__``) as well.

A cycle is a strongly connected component with more than one module, or a module importing itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def all_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, wherever it is (module docstring)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in mods:
            return candidate
    return None


def imports_of(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    targets: set[str] = set()
    for node in all_imports(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
            names = [n for n in names if n in mods] or [base]
        for name in names:
            target = resolve(name, mods)
            if target is not None:
                targets.add(target)
    return targets


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, and self-imports (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_our_imports() -> None:
    edges = graph()
    assert "app.store" in edges["app.state"]  # module level
    assert "app.cluster.client" in edges["app.backend"]  # a lazy import inside a function
    assert "app.compute" in edges["app.backend"]  # under TYPE_CHECKING only
    assert "app.backend.local" in edges["app.services.image_sets"]  # from pkg.mod import name
    assert not any(m.startswith(("fastapi", "torch")) for targets in edges.values() for m in targets)


def test_no_import_cycles_in_app_and_models() -> None:
    found = cycles(graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
