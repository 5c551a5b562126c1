"""The layout shows the architecture: subpackages by job, no import cycles (also through imports
inside functions), ``analysis`` below the engine (it never imports ``rsb_tune``), and Ray in one
module. Read from the source with ``ast``, so the test needs no import of the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rsb_tune", "analysis")
# what stays at rsb_tune's top: the public surface, the CLI, the options and errors
TOP_LEVEL = {"__init__", "__main__", "api", "cli", "errors", "options", "_jit", "_log"}
SUBPACKAGES = {"augment", "data", "planning", "runner", "sequential", "serve", "store", "training", "search_spaces"}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, modules) -> set[str]:
    """The modules of ``modules`` that ``path`` imports anywhere (function bodies included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # a package's own __init__ is not an edge: importing a.b runs a/__init__ first anyway
        graph[name] = {m for m in _imports(path, modules) if m != name and not name.startswith(m + ".")}
    return graph


def _cycle(graph) -> list[str] | None:
    """One import cycle of ``graph``, or None (depth-first search, white/grey/black)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "grey":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "black"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_analysis_never_imports_the_engine():
    graph = _graph()
    up = sorted((m, d) for m, deps in graph.items() if m.startswith("analysis") for d in deps if d.startswith("rsb_tune"))
    assert not up, f"analysis imports the engine: {up}"


def test_rsb_tune_is_subpackages_by_job():
    top = {p.stem for p in (ROOT / "rsb_tune").glob("*.py")}
    assert top <= TOP_LEVEL, f"flat modules beside the subpackages: {sorted(top - TOP_LEVEL)}"
    dirs = {p.name for p in (ROOT / "rsb_tune").iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert dirs <= SUBPACKAGES, f"unknown subpackages: {sorted(dirs - SUBPACKAGES)}"
    for name in SUBPACKAGES - {"search_spaces"}:
        assert (ROOT / "rsb_tune" / name / "__init__.py").is_file(), name
        assert (ROOT / "rsb_tune" / name / "__init__.py").read_text().strip().startswith('"""'), f"rsb_tune/{name}/__init__.py says what the subpackage is for"


def test_ray_lives_in_one_module():
    graph_users = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m == "ray" or m.startswith("ray.") for m in mods):
                graph_users.append(name)
    assert set(graph_users) == {"rsb_tune.runner.ray_executor"}


def test_pyproject_installs_every_subpackage():
    text = (ROOT / "pyproject.toml").read_text()
    for name in SUBPACKAGES:
        assert f'"rsb_tune.{name}"' in text, name
