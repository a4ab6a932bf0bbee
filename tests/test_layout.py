"""The house keeps its rooms: what each part of reactor/ may import, and no import cycles.

The rules are the ones each room's `__init__` docstring states (docs/architecture.md,
"Rooms"). They are read from the source, every import counted wherever it stands (in a
function, or behind `TYPE_CHECKING`: a cycle hidden there is still a cycle of design),
and checked again for real: every module imported in a fresh interpreter of its own, as
aiohttp's tests/test_circular_imports.py does, and the light verbs run without loading
the service's libraries.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "reactor"

# room -> the rooms of reactor it may import (itself included).
ALLOWED_ROOMS: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "disk": frozenset({"core", "disk"}),
    "settings": frozenset({"core", "settings"}),
    "runtime": frozenset({"core", "runtime"}),
    "cluster": frozenset({"core", "settings", "cluster"}),
    "serve": frozenset({"core", "disk", "settings", "runtime", "cluster", "serve"}),
    "engine": frozenset({"core", "settings", "runtime", "engine"}),
    "ops": frozenset({"core", "disk", "settings", "cluster", "ops"}),
    "sim": frozenset({"core", "sim"}),
    "commands": frozenset(
        {
            "core",
            "disk",
            "settings",
            "runtime",
            "cluster",
            "serve",
            "engine",
            "ops",
            "sim",
            "commands",
        }
    ),
    "cli": frozenset({"package", "commands"}),
    "__main__": frozenset({"cli"}),
    "package": frozenset(),
}
# room -> the libraries beyond the standard library it may import.
ALLOWED_LIBRARIES: dict[str, frozenset[str]] = {
    "runtime": frozenset({"structlog"}),
    "cluster": frozenset({"structlog"}),
    # run_facts: a run's run info, read when it is adopted; read_files: jobs' reads
    "disk": frozenset({"pod5", "lib_pod5", "pyarrow", "pysam", "dnaio"}),
    "serve": frozenset({"aiohttp", "watchdog", "prometheus_client", "structlog"}),
    "engine": frozenset({"aiohttp", "structlog"}),
    "sim": frozenset({"pod5", "numpy", "pysam"}),  # pysam: the fake dorado's BAM
    "commands": frozenset({"aiohttp"}),
}
# Only these modules may import these libraries (the `sim` extra is optional).
ONLY_HERE = {
    "pod5": {"reactor.sim.pod5_files", "reactor.disk.run_facts", "reactor.disk.read_files"},
    "dnaio": {"reactor.disk.read_files"},
    "lib_pod5": {"reactor.disk.read_files"},
    "pyarrow": {"reactor.disk.read_files"},
    "numpy": {"reactor.sim.pod5_files"},
}
# What building the parser and running a light verb must never load.
HEAVY = frozenset(
    {"aiohttp", "watchdog", "prometheus_client", "structlog", "pod5", "numpy", "pysam", "dnaio"}
)
# At module level a command may import only these rooms: the rest waits for `run`.
COMMANDS_AT_IMPORT = frozenset({"core", "settings", "ops", "commands"})


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (a module, or a name in one)
    line: int
    top_level: bool  # at module level (not in a function, class body or TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path) -> Iterator[Import]:
    """Every import in the module, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            top.add(id(node))
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            top.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, id(node) in top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno, id(node) in top)


def room_of(module: str) -> str:
    parts = module.split(".")
    if parts == ["reactor"]:
        return "package"
    return parts[1]


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The reactor module an import reaches (a name in a module counts as the module)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


ALL = modules()
IMPORTS = [found for module, path in ALL.items() for found in imports_of(module, path)]


def test_every_room_says_what_it_owns_and_what_it_may_import() -> None:
    rooms = [path for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()]
    assert {room.name for room in rooms} == set(ALLOWED_ROOMS) - {"cli", "__main__", "package"}
    for room in rooms:
        doc = ast.get_docstring(ast.parse((room / "__init__.py").read_text(encoding="utf-8")))
        assert doc, f"reactor/{room.name}/__init__.py has no docstring"
        assert "May import" in doc, f"reactor/{room.name} does not say what it may import"


def test_each_room_imports_only_the_rooms_it_may() -> None:
    wrong = []
    for found in IMPORTS:
        reached = resolve(found.target, ALL)
        if reached is None:
            continue
        room, other = room_of(found.module), room_of(reached)
        if other not in ALLOWED_ROOMS[room]:
            wrong.append(f"{found.module}:{found.line} imports {reached} ({room} -> {other})")
    assert wrong == []


def test_each_room_imports_only_the_libraries_it_may() -> None:
    stdlib = sys.stdlib_module_names
    wrong = []
    for found in IMPORTS:
        top = found.target.split(".")[0]
        if top == "reactor" or top in stdlib or top == "__future__":
            continue
        room = room_of(found.module)
        if top not in ALLOWED_LIBRARIES.get(room, frozenset()):
            wrong.append(f"{found.module}:{found.line} imports {found.target} ({room})")
        elif top in ONLY_HERE and found.module not in ONLY_HERE[top]:
            wrong.append(f"{found.module}:{found.line} imports {top}, kept to {ONLY_HERE[top]}")
    assert wrong == []


def test_commands_load_the_working_rooms_only_when_they_run() -> None:
    wrong = []
    for found in IMPORTS:
        if room_of(found.module) != "commands" or not found.top_level:
            continue
        top = found.target.split(".")[0]
        reached = resolve(found.target, ALL)
        if top in HEAVY or (reached is not None and room_of(reached) not in COMMANDS_AT_IMPORT):
            wrong.append(f"{found.module}:{found.line} imports {found.target} at import time")
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_not_even_behind_type_checking() -> None:
    graph: dict[str, set[str]] = {module: set() for module in ALL}
    for found in IMPORTS:
        reached = resolve(found.target, ALL)
        if reached is not None and reached != found.module:
            graph[found.module].add(reached)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a cycle of three, hidden among other edges, is found."""
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def _import_alone(module: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    return module, done.returncode, done.stderr[-2000:]


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = [name for name in ALL if not name.endswith("__main__")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_import_alone, names))
    failed = {module: stderr for module, code, stderr in results if code != 0}
    assert failed == {}
    assert len(results) == len(names) > 60


LIGHT_VERBS = {
    "status": ["status", "--url", "http://127.0.0.1:9", "--json"],
    "requeue": ["requeue", "--all", "--url", "http://127.0.0.1:9"],
    "check": ["check", "--input-dir", "/nonexistent/in", "--output-dir", "/nonexistent/out"],
    "help": ["--version"],
}


@pytest.mark.parametrize("verb", sorted(LIGHT_VERBS))
def test_light_verbs_never_load_the_service_libraries(verb: str, tmp_path: Path) -> None:
    """`reactor status` (and requeue, check, the parser itself) start fast and work where
    the service's libraries are not needed: none of them is loaded."""
    script = (
        "import sys\n"
        "from reactor.cli import main\n"
        "try:\n"
        f"    code = main({LIGHT_VERBS[verb]!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "loaded = sorted({name.split('.')[0] for name in sys.modules} & "
        f"set({sorted(HEAVY)!r}))\n"
        "print('LOADED', loaded, 'CODE', code, file=sys.stderr)\n"
    )
    done = _run_clean(script, tmp_path)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("LOADED [] CODE"), done.stderr
    assert "Traceback" not in done.stderr


# What a single run's service does not use before its first DONE (the reading libraries:
# the read worker's; host mode; Slurm's client, with a [fleet] table): never loaded by its
# start, which they held back by ~0.2 s (docs/operations.md, "Performance").
SERVE_DEFERRED = ("pod5", "pyarrow", "numpy", "pysam", "dnaio", "reactor.disk.read_files",
                  "reactor.serve.host", "reactor.cluster")  # fmt: skip


def test_a_single_run_starts_serving_without_what_it_does_not_use(tmp_path: Path) -> None:
    """`reactor serve`'s imports, then its application's start-up (recovery, the scan
    started) and stop, in a fresh interpreter: none of SERVE_DEFERRED is loaded."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "import reactor.commands.serve\n"
        "from aiohttp import web\n"
        "from reactor.runtime.logs import configure_logging\n"
        "from reactor.serve.app import create_app\n"
        "from reactor.serve.read_worker import shared_read_worker\n"
        "from reactor.settings.serve import ServeConfig, prepare_output_dirs\n"
        "async def start_and_stop():\n"
        "    config = ServeConfig(input_dir=Path('in'), output_dir=Path('out'))\n"
        "    prepare_output_dirs(config)\n"
        "    runner = web.AppRunner(create_app(config))\n"
        "    await runner.setup()\n"
        "    await runner.cleanup()\n"
        "asyncio.run(start_and_stop())\n"
        f"deferred = {SERVE_DEFERRED!r}\n"
        "loaded = sorted(n for n in sys.modules if n.partition('.')[0] in deferred\n"
        "                or any(n == d or n.startswith(d + '.') for d in deferred))\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    done = _run_clean(script, tmp_path)
    assert done.stderr.strip().splitlines()[-1] == "LOADED []", done.stderr


TESTS = REPO / "tests"


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support; a test module is never a library."""
    wrong = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                last = name.split(".")[-1]
                if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert wrong == []


# Built from parts, so this file does not match itself.
OUTSIDE_CITATION = re.compile("|".join([r"PRODUCT\.md", r"STYLE\.md", r"\b[Ii]ssue" r" #?[0-9]"]))


def test_code_cites_only_what_is_in_the_repository() -> None:
    """Comments cite docs/ or the reason itself, never a file outside the repository or a
    tracker number a reader cannot open."""
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for root in (PACKAGE, TESTS)
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_CITATION.search(line)
    ]
    assert found == []


def test_the_citation_check_can_fail() -> None:
    assert OUTSIDE_CITATION.search("see " + "PRODUCT" + ".md")
    assert OUTSIDE_CITATION.search("(issue" + " 6)")
    assert OUTSIDE_CITATION.search("issue" + " #6")
    assert not OUTSIDE_CITATION.search("dorado #1311, docs/architecture.md")


def _run_clean(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter that sees only the repository."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
