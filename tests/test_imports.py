"""The direction of imports is the architecture: no module of the package imports, directly or
through others, a module that imports it back. Parsed with ``ast`` (nothing is imported):
module-level imports (those run at import time, ``if TYPE_CHECKING:`` blocks left out) and,
separately, every import including the lazy ones inside functions."""

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dispersion"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"))


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.Module, lazy: bool):
    """The Import/ImportFrom nodes of a module: at module level (also inside top-level try/if
    blocks, not under TYPE_CHECKING), or anywhere with ``lazy``."""
    if lazy:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)) and not _is_type_checking(node):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []) or [])
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def _targets(module: str, node) -> set[str]:
    """The package modules an import statement of ``module`` loads (beyond its parents)."""
    is_pkg = MODULES[module].name == "__init__.py"
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        while name and name not in MODULES:  # a name inside a module: the module
            name = name.rpartition(".")[0]
        if name.startswith("dispersion") and name != module and not module.startswith(name + "."):
            out.add(name)
    return out


@functools.lru_cache(maxsize=None)
def import_graph(lazy: bool) -> dict[str, frozenset[str]]:
    """Module → the package modules it imports (at module level, or anywhere with ``lazy``)."""
    return {module: frozenset().union(*(_targets(module, n) for n in _import_nodes(_tree(module), lazy)))
            for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes (first = last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_imports():
    g = import_graph(lazy=False)
    assert "dispersion.regularizers.blocked" in g["dispersion.regularizers.pairwise"]
    assert "dispersion._sweep" in g["dispersion.metrics"]
    assert "dispersion.experiments.image" in g["dispersion.pipeline.image"]


@pytest.mark.parametrize("lazy", [False, True], ids=["module-level", "all imports"])
def test_no_import_cycles(lazy):
    cycle = find_cycle(import_graph(lazy))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_core_never_reads_the_workflow():
    """sphere, metrics, regularizers, optim, prototypes, training, data, models and report import
    neither the pipeline (the config) nor the experiments nor the command line."""
    core = ("sphere", "metrics", "regularizers", "optim", "prototypes", "training", "data", "models", "report")
    forbidden = ("dispersion.pipeline", "dispersion.experiments", "dispersion.cli", "dispersion.__main__")
    g = import_graph(lazy=True)
    bad = {m: sorted(t for t in targets if t.startswith(forbidden)) for m, targets in g.items()
           if m.split(".")[1:2] and m.split(".")[1] in core}
    assert not {m: t for m, t in bad.items() if t}, bad
