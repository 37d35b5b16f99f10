"""The layout shows the architecture: dependencies go one way and there are no import circles.

    so3 (pure math) <- products <- nn <- models <- train / calculator / md / cli

and nothing outside a package imports its private (``_*``) modules. Read from the source with ``ast``
(module-level and function-level imports alike), so a late import that hides a circle is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "gaunt"
#: the layer of each package; a module may import only from its own layer or lower ones
LAYERS = {
    "so3": 0,
    "products": 1,
    "nn": 2,
    "data": 2,
    "models": 3,
    "train": 4,
    "bench": 4,
    "checks": 4,
    "calculator": 4,
    "command": 4,
    "outputs": 2,
    "md": 5,
    "quickstart": 5,
    "cli": 6,
    "__init__": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the gaunt modules imported by ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("gaunt"):
                found |= {target} if target != "gaunt" else set()  # "from .. import products" names modules
                found |= {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gaunt")}
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


GRAPH = {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]] if module != "gaunt" else LAYERS["__init__"]


def test_dependencies_go_one_way():
    wrong = [(m, d) for m, deps in GRAPH.items() for d in deps if _layer(d) > _layer(m)]
    assert not wrong, f"imports against the layering so3 <- products <- nn <- models <- train/cli: {wrong}"


def test_no_private_module_is_imported_from_outside_its_package():
    wrong = []
    for module, deps in GRAPH.items():
        for d in deps:
            parts = d.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and p != "__init__"]
            if private and not module.startswith(".".join(parts[: private[0]]) + "."):
                wrong.append((module, d))
    assert not wrong, wrong


def _cycles() -> list[list[str]]:
    """Import circles between modules (package ``__init__`` re-exports excluded: they only gather names)."""
    packages = {m for m in GRAPH if (SRC.parent / m.replace(".", "/") / "__init__.py").exists()}
    graph = {m: deps - packages for m, deps in GRAPH.items() if m not in packages}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_circles():
    assert not _cycles(), _cycles()


def test_the_circle_check_is_not_vacuous(monkeypatch):
    monkeypatch.setitem(GRAPH, "gaunt.products.cg", GRAPH["gaunt.products.cg"] | {"gaunt.products.registry"})
    assert _cycles()


@pytest.mark.parametrize("module", ["gaunt.products.registry", "gaunt.products.program"])
def test_graph_is_read(module):
    assert module in GRAPH and GRAPH["gaunt.products.registry"]
