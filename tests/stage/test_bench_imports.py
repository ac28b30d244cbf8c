"""The benchmark's modules (bench/*.py) import each other without a cycle: no module imports
one that imports it back, directly or through others. Imports inside functions count too."""

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent.parent / "bench"


def bench_imports() -> dict:
    """Each bench module's name -> the bench modules it imports, anywhere in its file."""
    modules = {p.stem: p for p in BENCH.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        graph[name] = sorted(imported & modules.keys())
    return graph


def cycle(graph: dict) -> list:
    """One import cycle of `graph` as [a, b, ..., a], or [] when there is none."""
    done, path = set(), []

    def visit(name: str) -> list:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return []
        path.append(name)
        for imported in graph[name]:
            found = visit(imported)
            if found:
                return found
        path.pop()
        done.add(name)
        return []

    for name in sorted(graph):
        found = visit(name)
        if found:
            return found
    return []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert cycle({"a": ["b", "c"], "b": ["c"], "c": []}) == []


def test_the_bench_modules_import_each_other_without_a_cycle():
    graph = bench_imports()
    assert "bench" in graph and "report" in graph
    assert cycle(graph) == [], f"import cycle among bench/*.py: {' -> '.join(cycle(graph))}"
