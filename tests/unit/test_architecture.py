"""The package's structure (issue: architecture): no import cycle, backends behind one
interface, the engine free of method and backend classes, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pairscope"
MAX_LINES = 600
# Modules over MAX_LINES, each capped at its present size until it is split (a ratchet:
# growing one fails, and so does leaving one listed once it fits).
OVERSIZE: dict[str, tuple[int, str]] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code (lazy
    imports inside functions count: they make a cycle all the same)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in paths}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                if base in paths:
                    graph[name].add(base)
                graph[name] |= {f"{base}.{a.name}" for a in node.names} & paths.keys()
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "pairscope.backends.served" in graph and graph["pairscope.models"]
    assert cycles(graph) == []


def isinstance_names(path: Path) -> set[str]:
    """Every class name used as the second argument of isinstance() in a file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            kinds = node.args[1]
            for k in kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]:
                names.add(k.attr if isinstance(k, ast.Attribute) else getattr(k, "id", ""))
    return names


BACKEND_CLASSES = {"LocalModel", "ServedModel", "ModelStream", "ServedStream", "LocalForcer"}
STRATEGY_CLASSES = {"Base", "Guide", "Nudging", "Blend", "Strategy"}


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_backend_class_check_outside_backends(path):
    if path.parent.name == "backends":
        return
    assert not isinstance_names(path) & BACKEND_CLASSES


def test_the_decoding_loop_checks_no_strategy_class():
    for path in (PACKAGE / "decoding").glob("*.py"):
        if path.name != "strategies.py":
            assert not isinstance_names(path) & STRATEGY_CLASSES, path.name


def test_isinstance_names_sees_tuples_and_attributes(tmp_path):
    probe = tmp_path / "x.py"
    probe.write_text("isinstance(a, (m.ServedModel, Blend))\nisinstance(b, int)\n")
    assert isinstance_names(probe) == {"ServedModel", "Blend", "int"}


def test_modules_stay_readable():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert sorted(over) == sorted(OVERSIZE), "update OVERSIZE with the reason, or split"
    for name, n in over.items():
        assert n <= OVERSIZE[name][0], f"{name} grew to {n} lines"


def test_one_prefix_cache_mechanism():
    """Only the decoding stream builds a KV cache: teacher forcing reuses a shared prompt
    prefix through a forked one-row stream, not a cache of its own."""
    builders = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DynamicCache":
                builders.add(str(path.relative_to(PACKAGE)))
    assert builders == {"runtime/stream.py"}
