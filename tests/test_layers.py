"""The package's layers read top-down: no import cycles, and the floors import only what is below them.

Doors (README, "Architecture"; docs/architecture.md): ``cli -> export/bench/verify/serve -> runtime ->
(numpy + one backend library)``, ``export -> model``, ``training -> model``, and ``targets``, ``tensorrt``,
``manifest``, ``extras``, ``errors`` and the ``util`` helpers at the bottom. The runtime never reaches
``model`` (nor torch) except through its one door, the torch reference backend.
Imports inside functions count: a lazy import is still a dependency, and the cycles this test
exists for (bench.report <-> bench.plots) were lazy ones.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import danet_deploy

PACKAGE = Path(danet_deploy.__file__).parent


def _modules() -> dict[str, Path]:
    found = {"danet_deploy": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE)], "danet_deploy."):
        rel = info.name.split(".")[1:]
        path = PACKAGE.joinpath(*rel)
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    skipped = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def import_graph() -> dict[str, set[str]]:
    """``{module: {danet_deploy modules it imports anywhere in its body}}``."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # "pkg.mod.attr" -> "pkg.mod"
                    target = target.rpartition(".")[0]
                if target.startswith("danet_deploy") and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), package __init__ re-exports excluded."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def edges(v: str) -> set[str]:
        # a package's __init__ importing its own submodules is a re-export, not a layer dependency
        return {w for w in graph[v] if not w.startswith(v + ".")}

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_detector_finds_a_planted_cycle():
    graph = {
        "danet_deploy.a": {"danet_deploy.b"},
        "danet_deploy.b": {"danet_deploy.c"},
        "danet_deploy.c": {"danet_deploy.a"},
        "danet_deploy.d": {"danet_deploy.a"},
    }
    assert cycles(graph) == [["danet_deploy.a", "danet_deploy.b", "danet_deploy.c"]]


# floor -> packages it must never import (directly or lazily)
FORBIDDEN = {
    "danet_deploy.util": (
        "targets",
        "tensorrt",
        "model",
        "data",
        "runtime",
        "manifest",
        "extras",
        "inputs",
        "outputs",
        "planner",
        "engine_reads",
        "eval_protocol",
        "export",
        "verify",
        "training",
        "serve",
        "bench",
        "cli",
        "segment",
        "demo",
    ),  # small helpers: errors and each other only
    "danet_deploy.targets": ("export", "runtime", "bench", "cli", "model", "verify", "training", "tensorrt", "data"),
    "danet_deploy.tensorrt": ("export", "runtime", "bench", "cli", "model", "verify", "training"),
    "danet_deploy.runtime": ("export", "bench", "cli", "verify", "training", "model"),
    "danet_deploy.export": ("bench", "cli", "runtime", "training"),
    "danet_deploy.bench": ("cli",),
    "danet_deploy.serve": ("cli", "export", "model", "bench", "training"),  # reads manifests, runs the runtime
    "danet_deploy.model": ("export", "runtime", "bench", "cli", "verify", "training"),
    "danet_deploy.training": ("export", "bench", "cli", "verify", "serve"),
}
# the one backend allowed to build the reference model: the runtime's door to ``model`` and torch
TORCH_DOOR = "danet_deploy.runtime.backends.torch"
ALLOWED = {(TORCH_DOOR, "danet_deploy.model")}
# what the runtime must never reach, through any chain of modules below it (the torch door aside)
ABOVE_RUNTIME = ("model", "export", "bench", "cli", "verify", "training", "serve", "data")


def test_floors_import_only_what_is_below_them():
    graph = import_graph()
    wrong = []
    for module, edges in graph.items():
        for floor, banned in FORBIDDEN.items():
            if module == floor or module.startswith(floor + "."):
                for target in edges:
                    top = ".".join(target.split(".")[:2])
                    if top.split(".")[1] in banned and (module, top) not in ALLOWED:
                        wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(_modules())
    code = (
        "import importlib, sys\nfailed = []\n"
        f"for name in {names!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed)); sys.exit(1 if failed else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def runtime_reach(graph: dict[str, set[str]]) -> dict[str, str]:
    """Every module the runtime imports, directly or through the floors below it, mapped to the module
    that imports it (for the message); the torch door and what only it imports are left out."""
    door = {
        m
        for m in graph
        if m == TORCH_DOOR or (TORCH_DOOR in graph[m] and m.startswith("danet_deploy.runtime.backends"))
    }
    reached: dict[str, str] = {}
    stack = [m for m in graph if m.startswith("danet_deploy.runtime") and m not in door]
    while stack:
        module = stack.pop()
        for target in graph[module]:
            if target not in reached and target not in door and not target.startswith("danet_deploy.runtime"):
                reached[target] = module
                stack.append(target)
    return reached


def test_runtime_reaches_no_room_above_it_through_its_floors():
    """``runtime -> manifest -> model.registry`` is as much a runtime -> model door as a direct import:
    follow every chain (the manifest once checked class counts with the model registry's bound)."""
    reached = runtime_reach(import_graph())
    wrong = sorted(f"{via} -> {module}" for module, via in reached.items() if module.split(".")[1] in ABOVE_RUNTIME)
    assert wrong == []


def test_runtime_reach_finds_a_planted_chain():
    graph = {
        "danet_deploy.runtime.loader": {"danet_deploy.manifest"},
        "danet_deploy.manifest": {"danet_deploy.model.registry"},
        "danet_deploy.model.registry": set(),
        TORCH_DOOR: {"danet_deploy.model.danet"},
        "danet_deploy.model.danet": set(),
    }
    assert runtime_reach(graph) == {
        "danet_deploy.manifest": "danet_deploy.runtime.loader",
        "danet_deploy.model.registry": "danet_deploy.manifest",
    }
