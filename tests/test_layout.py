"""The package's layout rules, checked on the source: imports point one way (no import
cycles between modules, function-level imports included; type-only ones only where
listed below, until they are gone), and nothing in ``sleeptime`` imports the top-level
``workers/`` folder (deploy material, not a package)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import sleeptime

ROOT = Path(sleeptime.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


KNOWN = modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, name: str, *, with_type_checking: bool = False) -> list[str]:
    """Every module name imported anywhere in the file (module level, inside functions,
    classes, try blocks), except under ``if TYPE_CHECKING:`` (never executed) unless
    ``with_type_checking``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not with_type_checking:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            for alias in node.names:  # ``from pkg import mod`` imports pkg.mod, else pkg
                sub = f"{mod}.{alias.name}"
                found.append(sub if sub in KNOWN else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@functools.cache
def import_graph(*, with_type_checking: bool = False) -> dict[str, set[str]]:
    """module -> the sleeptime modules it imports (``with_type_checking``: those
    imported under ``TYPE_CHECKING`` too). A parent package that Python runs on the way
    (``sleeptime/__init__.py``) is not an edge: it would make every module part of one
    cycle with the package's facade."""
    return {
        name: {
            t
            for t in imported_names(path, name, with_type_checking=with_type_checking)
            if t in KNOWN and t != name
        }
        for name, path in KNOWN.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)) is not None:
            return cycle
    return None


def test_graph_sees_function_level_imports() -> None:
    """The checker itself: a function-level import is an edge, a TYPE_CHECKING one not."""
    graph = import_graph()
    assert "sleeptime.worker.runtime" in graph["sleeptime.api"]  # inside start_worker()
    assert "sleeptime.api" in graph["sleeptime.worker.service"]  # inside serve()
    assert "sleeptime.api" not in graph["sleeptime.worker.runtime"]  # TYPE_CHECKING only
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def tangles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Every group of modules that import each other, directly or not (the strongly
    connected components of more than one module; Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


#: Type-only cycles allowed (each closed under ``TYPE_CHECKING``): none since issue 22,
#: item 2 removed the last three (api <-> worker.runtime: the worker port; llm.budget <->
#: llm.local: llama budget forcing lives in llm.local; capabilities/gateway/kv.prefill:
#: PrefillResult lives in llm.capabilities). None may appear.
KNOWN_TYPE_ONLY_CYCLES: set[frozenset[str]] = set()


def test_type_only_imports_add_no_cycles() -> None:
    assert tangles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    new = [sorted(g) for g in tangles(import_graph(with_type_checking=True))]
    new = [g for g in new if frozenset(g) not in KNOWN_TYPE_ONLY_CYCLES]
    assert new == [], f"import cycles through TYPE_CHECKING imports: {new}"


def test_nothing_imports_the_workers_folder() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, path in KNOWN.items()
        for target in imported_names(path, name)
        if target == "workers" or target.startswith("workers.")
    ]
    assert offenders == []
    assert not (ROOT.parent / "workers" / "__init__.py").exists(), "workers/ is not a package"


def test_worker_deploy_material_is_there() -> None:
    folder = ROOT.parent / "workers"
    assert (folder / "README.md").is_file()
    assert not list(folder.glob("*.py")), "the worker code lives in sleeptime/worker/"


#: Lower layers never import upper ones (docs/architecture.md, "Rules").
UPPER = (
    "sleeptime.api",
    "sleeptime.facade",
    "sleeptime.cli",
    "sleeptime.bench",
    "sleeptime.worker",
)
LOWER = (
    "sleeptime.llm",
    "sleeptime.store",
    "sleeptime.queue",
    "sleeptime.cache",
    "sleeptime.models",
    "sleeptime.settings",
    "sleeptime.errors",
)


def test_lower_layers_do_not_import_upper_ones() -> None:
    def under(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    upward = [
        f"{a} -> {b}"
        for a, targets in import_graph().items()
        if under(a, LOWER)
        for b in sorted(targets)
        if under(b, (*UPPER, "sleeptime.graphs", "sleeptime.background"))
    ]
    assert upward == []


#: The command line's one door into the benchmark (``sleeptime bench ...``); it turns a
#: missing ``bench`` extra into one line.
BENCH_DOOR = "sleeptime.cli.bench"


def _in_bench(name: str) -> bool:
    return name == "sleeptime.bench" or name.startswith("sleeptime.bench.")


def test_the_library_never_imports_the_benchmark() -> None:
    """The benchmark depends on the library, never the other way (type-only imports
    included): it can be left out of an install (the ``bench`` extra)."""
    backward = [
        f"{a} -> {b}"
        for a, targets in import_graph(with_type_checking=True).items()
        if not _in_bench(a) and a != BENCH_DOOR
        for b in sorted(targets)
        if _in_bench(b)
    ]
    assert backward == []
    assert any(_in_bench(b) for b in import_graph()[BENCH_DOOR])


def test_test_fixtures_do_not_come_from_the_benchmark() -> None:
    """conftest.py and the tests' helper modules (every file of tests/ but test_*.py)
    import nothing from ``sleeptime.bench``: tests of the library run without it."""
    folder = Path(__file__).parent
    helpers = [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("test_")]
    assert folder / "conftest.py" in helpers
    offenders = [
        f"{p.name} imports {target}"
        for p in helpers
        for target in imported_names(p, p.stem)
        if _in_bench(target)
    ]
    assert offenders == []


def test_no_test_takes_a_fixture_from_the_benchmark() -> None:
    """What the tests' helper modules provide (a Redis server, a PostgreSQL cluster, a
    free port) no test file takes from ``sleeptime.bench``, even where the benchmark has
    its own: a test of the library starts its servers with the tests' helpers. Tests of
    the benchmark import the benchmark's code, of course, just not these."""
    folder = Path(__file__).parent
    helpers = [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("test_")]
    provided = {
        node.name
        for p in helpers
        for node in ast.parse(p.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ClassDef | ast.FunctionDef)
    }
    assert {"RedisServer", "PostgresCluster", "free_port"} <= provided
    offenders = [
        f"{p.name}: from {node.module} import {alias.name}"
        for p in sorted(folder.glob("test_*.py"))
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and _in_bench(node.module or "")
        for alias in node.names
        if alias.name in provided
    ]
    assert offenders == []


#: SQLAlchemy names that build statements: only the store writes SQL.
_SQL_BUILDERS = frozenset({"select", "insert", "update", "delete", "text", "func", "and_", "or_"})


def test_sql_lives_in_the_store() -> None:
    """Statements are built in ``sleeptime/store`` only (repositories by concern; the
    policy, the API and the workers call them): no other module of the library imports
    the table definitions or SQLAlchemy's statement builders. The benchmark (outside
    the library) and the embedded queue (raw sqlite3 on its own tables) are exempt."""
    offenders = []
    for name, path in KNOWN.items():
        if (
            name.startswith(("sleeptime.store", "sleeptime.bench"))
            or name == "sleeptime.queue.sqlite"
        ):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.module == "sleeptime.store.schema" or (
                node.module == "sqlalchemy" and {a.name for a in node.names} & _SQL_BUILDERS
            ):
                offenders.append(f"{name}: from {node.module} import ...")
    assert not offenders, offenders


#: No module of the package over this many lines (docs/architecture.md, "Rules").
MAX_MODULE_LINES = 700


def test_no_module_over_the_line_limit() -> None:
    """Every module of the package, the benchmark's included: one concern per module."""
    assert len(KNOWN) > 100
    long = {
        name: n
        for name, path in KNOWN.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"
