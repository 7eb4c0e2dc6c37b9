"""The floor plan holds: no import cycle, the pure domain imports no other room, nothing is built on import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
ROOMS = ("app", "agents", "broker", "cli", "ingest", "krakenflow", "models", "sim", "tables")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports at module level (TYPE_CHECKING blocks and function bodies
    excluded: they do not run on import)."""
    modules = {module_name(p): p for room in ROOMS for p in (ROOT / room).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.parse(path.read_text()).body:  # module level only
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def imports_of(room: str, banned: set[str]) -> list[str]:
    """``path imports name`` for each absolute import in ``room`` whose top package is ``banned``."""
    offenders = []
    for path in (ROOT / room).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.split(".")[0] in banned]
    return offenders


def test_models_imports_nothing_from_the_other_rooms_nor_faust_or_io() -> None:
    banned = {*ROOMS, "faust", "aiokafka", "websockets", "rocksdict", "socket", "asyncio"} - {"models"}
    assert imports_of("models", banned) == []


def test_the_client_library_needs_only_the_domain_not_the_pipeline() -> None:
    """``krakenflow.client`` is what consumers install and import: no Faust, no worker rooms."""
    assert imports_of("krakenflow", {"faust", "app", "agents", "tables", "ingest", "cli", "sim"}) == []


def test_importing_every_module_builds_no_app_and_reads_no_settings() -> None:
    """Import all modules in a fresh interpreter with settings that would not validate: nothing may
    construct Settings or the Faust app as a side effect."""
    code = (
        "import importlib, pkgutil\n"
        f"for room in {ROOMS!r}:\n"
        "    pkg = importlib.import_module(room)\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, room + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "import app, faust\n"
        "assert app._app is None, 'the Faust app was built on import'\n"
        "print('ok')\n"
    )
    env = {"KRAKENFLOW_DEPTH": "7", "PATH": "/usr/bin:/bin"}  # an invalid depth: Settings.from_env would raise
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
