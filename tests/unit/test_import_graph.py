"""The server package's import graph: no circles, and every import goes down the layers.

Every import of a ``bankhub`` module counts, wherever it is written — at the top of a
module, inside a function, or under ``if TYPE_CHECKING:`` — so a local import cannot hide
a circle. The layers are the ones ``docs/architecture.md`` draws; a module may import
modules of its own layer or of a lower one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "server"
PACKAGE = ROOT / "bankhub"

# lowest first; a module belongs to the layer of the longest prefix that names it
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["bankhub", "bankhub.text", "bankhub.ids", "bankhub.passwords", "bankhub.logredact", "bankhub.gctune", "bankhub.tlsgen", "bankhub.logs", "bankhub.tracing", "bankhub.metrics"]),
    (
        "pure core",
        ["bankhub.protocol", "bankhub.models", "bankhub.targeting", "bankhub.settings", "bankhub.policy", "bankhub.desk", "bankhub.alerts", "bankhub.crypto", "bankhub.bodies", "bankhub.media", "bankhub.widget", "bankhub.compliance"],
    ),
    ("storage", ["bankhub.storage", "bankhub.blobs"]),
    ("signalling", ["bankhub.broker", "bankhub.ratelimit", "bankhub.signals", "bankhub.outbox", "bankhub.batching", "bankhub.media.clamd"]),
    ("delivery", ["bankhub.delivery", "bankhub.media.runtime"]),
    ("hub", ["bankhub.hub"]),
    ("actions", ["bankhub.actions"]),
    ("wiring", ["bankhub.node"]),
    ("edges", ["bankhub.gateway", "bankhub.http", "bankhub.web"]),
    ("entry doors", ["bankhub.app", "bankhub.runner", "bankhub.demo", "bankhub.embedded", "bankhub.cli"]),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The bankhub modules an ``import from`` statement loads."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target != "bankhub" and not target.startswith("bankhub."):
        return []
    submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
    if submodules and len(submodules) == len(node.names):
        # ``from pkg import mod``: the module; a module's own package is loaded before it anyway
        return submodules
    return [target, *submodules]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):  # every import, at any depth
            if isinstance(node, ast.ImportFrom):
                edges.update(_resolve(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name == "bankhub" or a.name.startswith("bankhub."))
        edges.discard(name)
        graph[name] = edges
    return graph


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_names_a_module_that_exists() -> None:
    graph = _graph()
    missing = sorted(f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts if dst not in MODULES)
    assert not missing


def test_the_import_graph_has_no_circles() -> None:
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) < 0] == []


def test_imports_only_go_down_the_layers() -> None:
    graph = _graph()
    upward = sorted(
        f"{src} ({LAYERS[_layer(src)][0]}) -> {dst} ({LAYERS[_layer(dst)][0]})"
        for src, dsts in graph.items()
        for dst in dsts
        if dst in MODULES and _layer(dst) > _layer(src)
    )
    assert upward == []


SANS_IO = ["bankhub.protocol", "bankhub.policy", "bankhub.desk", "bankhub.alerts", "bankhub.models", "bankhub.text", "bankhub.targeting", "bankhub.settings", "bankhub.bodies", "bankhub.ids", "bankhub.compliance"]
SANS_IO += [f"bankhub.media.{m}" for m in ("sniff", "images", "voice", "sealing", "urls")]


def test_the_pure_core_does_no_io() -> None:
    """The sans-I/O core imports neither asyncio, the database driver, the broker client
    nor the web framework: it is tested by feeding it values."""
    io = re.compile(r"^(asyncio|asyncpg|redis|starlette|uvicorn|websockets|httpx)(\.|$)")
    pure = [m for m in MODULES if any(m == p or m.startswith(p + ".") for p in SANS_IO)]
    offenders = []
    for name in pure:
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{name}: {n}" for n in names if io.match(n)]
    assert offenders == []


# the checker itself: a circle hidden in a function, and an import up the layers, are found


def test_a_circle_through_a_local_import_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("bankhub.x", "def f():\n    from .hub import Hub\n", ["bankhub.hub"]),
        ("bankhub.actions.x", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..hub import Hub\n", ["bankhub.hub"]),
        ("bankhub.actions.x", "from . import messages\n", ["bankhub.actions.messages"]),
        ("bankhub.actions.x", "from . import messages, policy_x\n", ["bankhub.actions", "bankhub.actions.messages"]),
    ],
)
def test_local_and_type_only_imports_count(module: str, source: str, expected: list[str]) -> None:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, False, node))
    assert sorted(found) == expected


def test_signals_leave_only_through_the_outbox() -> None:
    """Nothing but the outbox calls the broker's ``publish``/``publish_many``: a signal
    published by hand could announce a state that is later rolled back."""
    allowed = ("bankhub.outbox", "bankhub.broker")
    callers = []
    for name, path in MODULES.items():
        if any(name == a or name.startswith(a + ".") for a in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("publish", "publish_many"):
                owner = ast.unparse(node.func.value)
                if owner.endswith("broker"):
                    callers.append(f"{name}: {ast.unparse(node.func)}")
    assert callers == []


def test_the_architecture_document_draws_these_layers() -> None:
    """``docs/architecture.md`` shows the same layers, in the same order, as this test checks."""
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc.split("<!-- layers:begin -->")[1].split("<!-- layers:end -->")[0]
    drawn = []
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([a-z_.]+)`", cells[1])
        drawn.append((cells[0], ["bankhub" if n == "bankhub" else f"bankhub.{n}" for n in names]))
    assert drawn == LAYERS
