"""The package has no import cycle, counting imports inside functions too."""

import ast
from pathlib import Path

import kmeans_imagery

PACKAGE = Path(kmeans_imagery.__file__).parent


def _modules():
    """Dotted name -> path of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("kmeans_imagery",) + path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name, path, modules):
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from x import y" imports the module x.y when there is one, else names of x.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, stack)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_walker_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "kmeans_imagery.engine.kmeans" in graph["kmeans_imagery.engine.dask"]
    # engine/__init__ imports the Dask backend inside a function only.
    assert "kmeans_imagery.engine.dask" in graph["kmeans_imagery.engine"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_in_memory_engine_does_not_import_the_dask_backend():
    graph = import_graph()
    assert "kmeans_imagery.engine.dask" not in graph["kmeans_imagery.engine.kmeans"]
