"""No import cycles among the modules of ``src/h2mesh``.

The graph is read from the source with ``ast``, so nothing is imported. Three kinds of
edge are told apart: module-level imports, imports inside functions (made lazily, at
call time) and imports under ``if TYPE_CHECKING:`` (never made at run time). A cycle of
run-time imports (either of the first two kinds) always fails. Type-only imports may
close a cycle only where listed below, each with the reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "h2mesh"

# Type-only imports that close a cycle: (importer, imported), each with why it is there.
TYPING_ALLOWED = {
    # Helpers of the server that are handed the Server itself, and only annotate it.
    ("h2mesh.server._admin", "h2mesh.server._server"),
    ("h2mesh.server._metrics", "h2mesh.server._server"),
    ("h2mesh.server._pages", "h2mesh.server._server"),
    ("h2mesh.server._supervisor", "h2mesh.server._server"),
    # An HTTP/1.1 exchange is handed the connection it belongs to.
    ("h2mesh.transport._h1stream", "h2mesh.transport._h1"),
    # A WebSocket session is handed the ASGI host that upgraded its request.
    ("h2mesh.server._websocket", "h2mesh.server._asgi"),
}

Edges = dict[str, dict[str, set[str]]]  # module -> kind -> imported modules


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[str, ast.Import | ast.ImportFrom]]:
    """Every import statement with its kind: ``module``, ``function`` or ``typing``."""

    def walk(node: ast.AST, kind: str) -> Iterator[tuple[str, ast.Import | ast.ImportFrom]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield kind, child
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "typing" if kind == "typing" else "function")
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            else:
                yield from walk(child, kind)

    return walk(tree, "module")


def _graph() -> Edges:
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: Edges = {}
    for name, (path, is_package) in modules.items():
        kinds: dict[str, set[str]] = {"module": set(), "function": set(), "typing": set()}
        here = name.split(".") if is_package else name.split(".")[:-1]
        for kind, stmt in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            else:
                base = here[: len(here) - stmt.level + 1] if stmt.level else []
                origin = ".".join(base + ([stmt.module] if stmt.module else []))
                # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one.
                targets = [
                    f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin
                    for a in stmt.names
                ]
            for target in targets:
                if target.split(".")[0] == PACKAGE and (found := known(target)) != name:
                    kinds[kind].add(found)  # type: ignore[arg-type]
        edges[name] = kinds
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(edges: Edges, component: list[str]) -> str:
    inside = set(component)
    lines = [
        f"  {src} -> {dst} ({kind})"
        for src in component
        for kind, targets in edges[src].items()
        for dst in sorted(targets & inside)
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def edges() -> Edges:
    return _graph()


def test_the_graph_sees_the_package(edges: Edges) -> None:
    # Guards the reader itself: relative imports of every depth resolve to modules.
    assert "h2mesh.server._server" in edges
    assert "h2mesh.transport" in edges["h2mesh.server._server"]["module"]
    assert "h2mesh._errors" in edges["h2mesh.protocol.connect"]["module"]
    assert "h2mesh.server._admin" in edges["h2mesh.server._server"]["function"]
    assert "h2mesh.server._server" in edges["h2mesh.server._pages"]["typing"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_of_module_level_imports(edges: Edges) -> None:
    graph = {m: kinds["module"] for m, kinds in edges.items()}
    cycles = _cycles(graph)
    assert not cycles, "\n\n".join(_describe(edges, c) for c in cycles)


def test_no_cycle_of_run_time_imports(edges: Edges) -> None:
    graph = {m: kinds["module"] | kinds["function"] for m, kinds in edges.items()}
    cycles = _cycles(graph)
    assert not cycles, "\n\n".join(_describe(edges, c) for c in cycles)


def test_type_only_imports_close_no_other_cycle(edges: Edges) -> None:
    graph = {
        m: kinds["module"]
        | kinds["function"]
        | {t for t in kinds["typing"] if (m, t) not in TYPING_ALLOWED}
        for m, kinds in edges.items()
    }
    cycles = _cycles(graph)
    assert not cycles, "\n\n".join(_describe(edges, c) for c in cycles)


def test_every_allowed_type_only_import_still_exists(edges: Edges) -> None:
    stale = {(m, t) for m, t in TYPING_ALLOWED if t not in edges.get(m, {}).get("typing", set())}
    assert not stale, f"remove from TYPING_ALLOWED: {sorted(stale)}"
