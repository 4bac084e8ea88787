"""The architecture as the imports draw it: no cycles, schemas/ below proxy/, proxyctl/ beside it."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "proxy", "proxyctl", "druid_specs")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _first_party(name: str) -> str | None:
    """The module `name` is, or lives in (an imported name may be a function in it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _imports(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = {
        _first_party(target)
        for node in ast.walk(ast.parse(path.read_text()))
        for target in _imported(node, package)
    }
    return {module for module in found if module and module != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _edges(source: str, target: str) -> list[tuple[str, str]]:
    return sorted(
        (a, b) for a, found in GRAPH.items() for b in found if a.startswith(source) and b.startswith(target)
    )


def test_no_module_imports_itself_back() -> None:
    try:
        tuple(TopologicalSorter(GRAPH).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("schemas", "proxy"),  # the public contract stands alone
        ("schemas", "proxyctl"),
        ("proxy", "proxyctl"),  # what gunicorn serves never needs the tooling
        ("proxy.backends.embedded", "proxyctl.ingest"),
    ],
)
def test_a_lower_layer_never_imports_a_higher_one(source: str, target: str) -> None:
    assert _edges(f"{source}.", f"{target}.") == []


def test_the_graph_sees_the_known_imports() -> None:
    assert "proxyctl.ingest.ndjson" in GRAPH["proxyctl.ingest.embedded_loader"]
    assert "proxy.access.principal" in GRAPH["proxy.access.store"]
