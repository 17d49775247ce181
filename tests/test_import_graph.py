"""The packages of ``src/loratune`` import each other as a DAG, and the planning stages stay torch-free.

Every ``import`` statement counts, the lazy ones inside functions too (a lazy import still ties the two
packages together); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "loratune"
TORCH_FREE = ("loratune.anatomy", "loratune.budget", "loratune.advise", "loratune.export", "loratune.data")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """``loratune.trial.loop`` → ``loratune.trial``; top-level modules (``loratune.errors``) are their own node."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> list[str]:
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    out: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                out.append(".".join(base + ([node.module] if node.module else [])))
            else:
                out.append(node.module or "")
    return [name for name in out if name == "loratune" or name.startswith("loratune.")]


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package → imported package → the ``module -> module`` imports that make the edge."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        graph.setdefault(_package(module), {})
        for target in _imports(path):
            a, b = _package(module), _package(target)
            if a != b and b != "loratune":  # the root holds only __version__
                graph[a].setdefault(b, []).append(f"{module} -> {target}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle as a node path (first node repeated at the end), or None for a DAG."""
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {}}) is None


def test_packages_import_each_other_as_a_dag():
    graph = package_graph()
    assert "loratune.trial" in graph and "loratune.measure" in graph  # the walk saw the tree
    cycle = find_cycle(graph)
    if cycle is not None:
        edges = [f"{a} → {b}: {graph[a][b][0]}" for a, b in zip(cycle, cycle[1:], strict=False)]
        pytest.fail("import cycle between packages:\n" + "\n".join(edges))


def test_measure_builds_the_model_through_trial_and_trial_never_imports_measure():
    graph = package_graph()
    assert "loratune.trial" in graph["loratune.measure"]
    assert "loratune.measure" not in graph["loratune.trial"]


@pytest.mark.parametrize("package", TORCH_FREE)
def test_planning_packages_import_neither_torch_nor_transformers(package):
    code = (
        f"import sys, {package}\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
