"""The import layering, checked statically: an AST walk of every product module (function-level imports
included, relative imports resolved) against the README's Architecture table, the one statement of the rules.

Fails on: an import circle among HandCap's modules; an import into a layer the table does not allow (an arrow
running back up); a third-party package a layer must never import (core: torch, bpy, cv2, scipy; inference:
bpy; ...); a layer importing another layer's private (underscore) names. No Blender, torch or network needed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "handcap"
#: Folders that are not part of the product (development scripts, tests, figures, data).
NOT_PRODUCT = {"tests", "benchmarks", "tools", "docs", "assets"}


@dataclass(frozen=True)
class Layer:
    name: str
    paths: tuple[str, ...]  # "core/" (a folder) or "preferences.py" (a file), relative to the repository
    may_import: frozenset[str]  # other layers' names
    never_imports: frozenset[str]  # third-party top-level packages


def readme_layers(readme: Path = REPO / "README.md") -> list[Layer]:
    """The table under "## Architecture" whose header starts with "| layer | modules |"."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("\n## Architecture", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| layer | modules |"))
    rows = []
    for line in lines[start:]:  # the table: its contiguous "|" lines
        if not line.startswith("|"):
            break
        rows.append(line)
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:4] == ["layer", "modules", "may import (HandCap)", "never imports"], header
    layers = []
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        paths = tuple(re.findall(r"`([^`]+)`", cells[1]))
        layers.append(Layer(cells[0], paths, frozenset(_names(cells[2])), frozenset(_names(cells[3]))))
    return layers


def _names(cell: str) -> list[str]:
    """ "core, builders (public names only)" -> ["core", "builders"]; "–" -> []."""
    cell = re.sub(r"\([^)]*\)", "", cell)
    return [n.strip() for n in cell.split(",") if n.strip() and n.strip() not in ("–", "-")]


def product_modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__) for every product module."""
    out = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0].startswith(".venv") or rel.parts[0] in NOT_PRODUCT:
            continue
        if any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join([PACKAGE, *parts])] = (path, is_package)
    return out


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # a HandCap module, or a third-party top-level package
    names: tuple[str, ...]  # the names taken from it (from-imports)
    line: int


def imports_of(name: str, path: Path, is_package: bool, modules) -> list[Import]:
    """Every import statement of the module, anywhere in it; relative imports resolved to dotted names.
    ``from X import y`` counts as an import of X.y when that is a module, else of X."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(name, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            plain = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.append(Import(name, sub, (), node.lineno))
                else:
                    plain.append(alias.name)
            if plain or not node.names:
                out.append(Import(name, target, tuple(plain), node.lineno))
    return out


def layer_of(module: str, layers: list[Layer]) -> Layer:
    rel = module.split(".")[1:]
    for layer in layers:
        for p in layer.paths:
            if p.endswith("/") and rel[:1] == [p.rstrip("/")]:
                return layer
            if not p.endswith("/") and tuple(rel) == (Path(p).with_suffix("").parts if p != "__init__.py" else ()):
                return layer
    raise AssertionError(f"{module} belongs to no layer of the README's Architecture table: add it there")


@pytest.fixture(scope="module")
def graph():
    modules = product_modules()
    layers = readme_layers()
    edges = {m: imports_of(m, *info, modules) for m, info in modules.items()}
    return modules, layers, edges


def _cycles(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in adjacency:
        if root in index:
            continue
        work = [(root, iter(sorted(adjacency[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adjacency[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_table_itself_is_a_layering():
    layers = readme_layers()
    names = {layer.name for layer in layers}
    assert len(names) == len(layers) >= 8
    for layer in layers:
        assert layer.may_import <= names, f"{layer.name} may import unknown layers {layer.may_import - names}"
    allowed = {layer.name: set(layer.may_import) for layer in layers}
    assert _cycles(allowed) == [], "the table's may-import lists form a circle"


def test_no_import_circles(graph):
    modules, _, edges = graph
    adjacency = {m: {i.target for i in edges[m] if i.target in modules and i.target != m} for m in modules}
    circles = _cycles(adjacency)
    assert circles == [], "import circles among HandCap modules:\n" + "\n".join(" <-> ".join(c) for c in circles)


def _every_import(graph):
    """(where, own layer, import, layer of its HandCap target or None for a third-party package)."""
    modules, layers, edges = graph
    for m, imports in edges.items():
        own = layer_of(m, layers)
        for i in imports:
            other = layer_of(i.target, layers) if i.target in modules else None
            yield f"{modules[m][0].relative_to(REPO)}:{i.line}", own, i, other


def test_no_arrow_runs_back_up(graph):
    bad = [
        f"{where} ({own.name}) imports {i.target} ({other.name})"
        for where, own, i, other in _every_import(graph)
        if other is not None and other != own and other.name not in own.may_import
    ]
    assert bad == [], "imports the README's Architecture table does not allow:\n" + "\n".join(bad)


def test_no_layer_imports_a_forbidden_package(graph):
    bad = [
        f"{where} ({own.name}) imports {i.target}"
        for where, own, i, other in _every_import(graph)
        if other is None and i.target.split(".")[0] in own.never_imports
    ]
    assert bad == [], "third-party packages a layer must never import:\n" + "\n".join(bad)


def test_no_layer_imports_another_layers_private_names(graph):
    bad = [
        f"{where} {i.target} {n}"
        for where, own, i, other in _every_import(graph)
        if other is not None and other != own
        for n in (*i.names, i.target.rpartition(".")[2])
        if _private(n)
    ]
    assert bad == [], "private names imported across layers:\n" + "\n".join(bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_walk_sees_lazy_and_relative_imports(graph):
    """The walk itself: a function-level relative import is resolved (cli.convert registers the classes
    lazily, inside run_batch), and a module-level one too."""
    _, _, edges = graph
    targets = {i.target for i in edges["handcap.cli.convert"]}
    assert "handcap.registration" in targets and "handcap.core.media" in targets
    assert "bpy" in targets  # ``import bpy`` inside a function
