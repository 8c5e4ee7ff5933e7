"""The dependency rule (docs/DESIGN.md, "Layers"), read from every module's imports with ast.

A module may import from its own layer or from a lower one, never upward and never from a
sibling layer of the same height; function-local and ``TYPE_CHECKING`` imports count like
any other. No two modules may import each other, directly or around a loop, and a cycle
hidden in a function is still a cycle; only imports under ``TYPE_CHECKING`` (which never
run, and name a type for the checker) may close a loop. No layer below ``loa.web``
imports ``aiohttp.web`` (the cli above it runs the app).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loa"


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    height: int
    prefixes: tuple[str, ...]


# Bottom to top. A module belongs to the layer with the longest matching prefix. Layers of
# equal height are siblings: neither may import the other. Packages that other workstreams
# are adding are listed already (loa.cluster, loa.relay.bus, a sendmmsg module in loa.relay,
# sans-IO modules in loa.relay.core and loa.speaker all fall under their prefix).
LAYERS = (
    Layer("foundation", 0, ("loa", "loa.errors", "loa.config")),
    Layer(
        "core",  # sans-IO: codecs, the relay core, and the rules of schedules and bulletins
        1,
        ("loa.codecs", "loa.relay.core", "loa.schedule", "loa.bulletins", "loa.cluster"),
    ),
    Layer("sources", 2, ("loa.streamer",)),
    Layer("speaker", 2, ("loa.speaker",)),  # the receiver on a pole: core only, no sources
    Layer("relay", 3, ("loa.relay",)),
    Layer("store", 4, ("loa.store",)),
    Layer(
        "services",
        5,
        (
            "loa.media",
            "loa.onair",
            "loa.access",
            "loa.inventory",
            "loa.schedule.service",
            "loa.bulletins.service",
            "loa.webhooks",
            "loa.reports",
            "loa.localservers",
            "loa.repeats",
            "loa.clustering",
        ),
    ),
    Layer("web", 6, ("loa.web",)),
    Layer("cli", 7, ("loa.cli", "loa.__main__")),
)
WEB_FRAMEWORK = "aiohttp.web"
WEB = next(layer for layer in LAYERS if layer.name == "web")


def layer_of(module: str) -> Layer:
    """The layer of the longest matching prefix; the bare package ``loa`` matches only
    itself, so a new top-level module must be given a layer here."""
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        for prefix in layer.prefixes:
            matches = module == prefix or (prefix != "loa" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def may_import(importer: Layer, imported: Layer) -> bool:
    return importer == imported or imported.height < importer.height


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    target: str  # a loa module, or the external module named
    line: int
    local: bool  # inside a function (or class body), not at module level
    typing_only: bool = False  # under `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    top_level = {id(n) for n in tree.body}
    typing_only: set[int] = set()
    for stmt in tree.body:  # imports under `if TYPE_CHECKING:` and try/except are top level
        if isinstance(stmt, ast.If | ast.Try):
            top_level.update(id(n) for n in ast.walk(stmt))
        if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            typing_only.update(id(n) for body in stmt.body for n in ast.walk(body))
    for node in ast.walk(tree):
        local, typing = id(node) not in top_level, id(node) in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno, local, typing)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from loa.web import auth` depends on loa.web.auth; `from x import name`
                # on x (and `from aiohttp import web` is the module aiohttp.web).
                target = sub if sub in known or base == "aiohttp" else base
                yield Import(name, target, node.lineno, local, typing)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def graph(root: Path = PACKAGE) -> list[Import]:
    found = modules(root)
    known = set(found)
    return [imp for name, path in found.items() for imp in imports_of(name, path, known)]


def internal(edges: list[Import]) -> list[Import]:
    return [e for e in edges if e.target == "loa" or e.target.startswith("loa.")]


def upward(edges: list[Import]) -> list[str]:
    out: dict[str, None] = {}
    for e in internal(edges):
        src, dst = layer_of(e.importer), layer_of(e.target)
        if not may_import(src, dst):
            where = "function-local " if e.local else ""
            out[
                f"{e.importer}:{e.line} {where}imports {e.target} "
                f"({src.name} {src.height} -> {dst.name} {dst.height})"
            ] = None
    return list(out)


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    succ: dict[str, set[str]] = {}
    for e in internal(edges):
        if e.typing_only:
            continue
        succ.setdefault(e.importer, set()).add(e.target)
        succ.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
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
            if len(component) > 1 or v in succ[v]:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


def web_framework_outside_web(edges: list[Import]) -> list[str]:
    return [
        f"{e.importer}:{e.line} imports {e.target}"
        for e in edges
        if (e.target == WEB_FRAMEWORK or e.target.startswith(WEB_FRAMEWORK + "."))
        and layer_of(e.importer).height < WEB.height
    ]


# -- the rule holds ------------------------------------------------------------------------


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        layer_of(name)
    with pytest.raises(AssertionError, match=r"loa\.schemas is in no layer"):
        layer_of("loa.schemas")  # a new top-level module is placed on purpose, not by default


def test_no_module_imports_upward() -> None:
    assert upward(graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_nothing_below_web_imports_the_web_framework() -> None:
    assert web_framework_outside_web(graph()) == []


# -- and the checks can fail ---------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "loa"
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    return root


@pytest.fixture
def fake_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    return tmp_path


def test_an_upward_import_is_found_even_inside_a_function(fake_root: Path) -> None:
    root = _tree(
        fake_root,
        {
            "loa/relay/node.py": "def f():\n    from loa.web.app import NODE\n",
            "loa/web/app.py": "NODE = 1\n",
            "loa/codecs/rtp.py": "from loa.relay import node\n",
        },
    )
    found = upward(graph(root))
    assert found == [
        "loa.codecs.rtp:1 imports loa.relay.node (core 1 -> relay 3)",
        "loa.relay.node:2 function-local imports loa.web.app (relay 3 -> web 6)",
    ]


def test_siblings_may_not_import_each_other(fake_root: Path) -> None:
    root = _tree(
        fake_root,
        {"loa/speaker/client.py": "import loa.streamer.file\n", "loa/streamer/file.py": ""},
    )
    assert upward(graph(root)) == [
        "loa.speaker.client:1 imports loa.streamer.file (speaker 2 -> sources 2)"
    ]


def test_a_cycle_through_a_function_local_import_is_found(fake_root: Path) -> None:
    root = _tree(
        fake_root,
        {
            "loa/web/pages.py": "from loa.web.auth import USER\n",
            "loa/web/auth.py": "USER = 1\ndef login():\n    from loa.web import pages\n",
            "loa/web/app.py": "from . import auth\n",
        },
    )
    assert cycles(graph(root)) == [["loa.web.auth", "loa.web.pages"]]


def test_a_type_checking_import_counts_for_layers_but_closes_no_cycle(fake_root: Path) -> None:
    root = _tree(
        fake_root,
        {
            "loa/web/keys.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from loa.web.pages import Templates\n",
            "loa/web/pages.py": "from loa.web.keys import PAGE\n",
            "loa/relay/udp.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    from loa.web import keys\n"
            ),
        },
    )
    edges = graph(root)
    assert cycles(edges) == []
    assert upward(edges) == ["loa.relay.udp:3 imports loa.web.keys (relay 3 -> web 6)"]


def test_the_web_framework_outside_web_is_found(fake_root: Path) -> None:
    root = _tree(
        fake_root,
        {
            "loa/streamer/icecast.py": "from aiohttp import StreamReader, web\n",
            "loa/relay/ws.py": "import aiohttp.web\n",
            "loa/web/app.py": "from aiohttp import web\n",
        },
    )
    assert web_framework_outside_web(graph(root)) == [
        "loa.relay.ws:1 imports aiohttp.web",
        "loa.streamer.icecast:1 imports aiohttp.web",
    ]


def test_the_design_shows_the_same_table() -> None:
    design = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    section = design.split("## Layers", 1)[1].split("\n## ", 1)[0]
    for layer in LAYERS:
        assert f"{layer.height}  {layer.name}" in section, layer.name
        for prefix in layer.prefixes:
            assert prefix in section, prefix
