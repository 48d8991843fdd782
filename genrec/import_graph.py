"""The graph of which module of a package imports which, read from the source with ``ast``, and the
import loops in it.

Every import statement counts, wherever it stands: at module level, under ``if TYPE_CHECKING:``
and inside function bodies. genrec imports heavy libraries (torch, transformers, vLLM) inside
functions to keep start-up quick, and that habit must not hide a loop: two modules that import
each other, lazily or only for type hints, are one layer, and the layering of ``genrec/``
(docs/architecture.md) says which way each edge may point. An edge goes to the module named, not
to the packages above it (``import a.b.c`` runs ``a/b/__init__.py`` too, but a package's
``__init__`` that re-exports its modules would otherwise put every module in a loop with it).

Run ``python -m genrec.import_graph [package dir]`` to print the loops (exit 1 when there is one).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name of every ``.py`` file under the package directory ``root`` (its ``__init__`` is
    the package's own name)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[str, int]]:
    """The modules of ``known`` that the file at ``path`` imports, with the line of each import.

    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise SyntaxError(f"{path}:{e.lineno}: cannot parse: {e.msg}") from e
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append((child if child in known else base, node.lineno))
    return [(name, line) for name, line in found if name in known and name != module]


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported module: first line importing it}}`` for the package directory ``root``."""
    names = module_names(root)
    known = set(names)
    graph: dict[str, dict[str, int]] = {}
    for module, path in names.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(path, module, known):
            edges.setdefault(target, line)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One loop per strongly connected group of modules (Tarjan's algorithm, iteratively), each as
    the module path ``[a, b, ..., a]``; empty when the graph has no loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return [_loop_through(graph, set(group), group[0]) for group in groups]


def _loop_through(graph: dict[str, dict[str, int]], group: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside ``group`` (breadth-first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in group:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in parents:
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"{start} is in a strongly connected group without a loop back")


def describe(graph: dict[str, dict[str, int]], loop: list[str]) -> str:
    """``a (line 12) -> b (line 40) -> a``: each step with the line of the import that makes it."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(loop, loop[1:], strict=False)]
    return " -> ".join([*steps, loop[-1]])


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent
    graph = import_graph(root)
    loops = find_cycles(graph)
    for loop in loops:
        print("import loop:", describe(graph, loop))
    if not loops:
        print(f"no import loop among the {len(graph)} modules of {root}")
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
