"""Dependencies point one way: walk every package's imports with `ast` and check the layers.

    http_edge -> pipeline, stages;  stages -> pipeline, domain;  ops wires everything;
    pipeline knows none of them;  the domain (ledger, rules, model, webhooks) knows no runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages", "http_edge", "ledger", "rules", "model", "webhooks", "ops")
DOMAIN = ("ledger", "rules", "model", "webhooks")

# package -> top-level modules it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    "pipeline": frozenset(PACKAGES) - {"pipeline"},
    **{package: frozenset({"aiohttp", "pipeline", "stages", "http_edge", "ops"})
       for package in DOMAIN},
    "stages": frozenset({"http_edge", "ops"}),
}


def imports_of(source: str, *, package: str) -> list[tuple[int, str]]:
    """(line, top-level module) of every import, `if TYPE_CHECKING:` ones included; a
    relative import stays inside `package`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.partition(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = package if node.level else (node.module or "").partition(".")[0]
            found.append((node.lineno, module))
    return found


# The one exception, by module: webhook delivery POSTs with aiohttp's *client*.
ALLOWED: dict[str, frozenset[str]] = {"webhooks.http_client": frozenset({"aiohttp"})}


def violations(package: str, *, root: Path = ROOT) -> list[str]:
    forbidden = FORBIDDEN[package]
    found = []
    for path in sorted((root / package).rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        allowed = ALLOWED.get(module, frozenset())
        for line, imported in imports_of(path.read_text(encoding="utf-8"), package=package):
            if imported in forbidden and imported not in allowed:
                found.append(f"{module} (line {line}) imports {imported}")
    return found


@pytest.mark.parametrize("package", [p for p in FORBIDDEN if (ROOT / p).is_dir()])
def test_layers(package: str) -> None:
    found = violations(package)
    assert not found, f"{package} must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(
        found)


def test_the_walker_sees_every_kind_of_import() -> None:
    source = (
        "import aiohttp.web\n"
        "import os, stages.screening as s\n"
        "from ops.settings import Settings\n"
        "from . import sibling\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from http_edge import app\n"
        "def late():\n"
        "    import pipeline\n"
    )
    assert sorted(imports_of(source, package="ledger")) == [
        (1, "aiohttp"), (2, "os"), (2, "stages"), (3, "ops"), (4, "ledger"), (5, "typing"),
        (7, "http_edge"), (9, "pipeline")]


def test_a_violation_names_the_module_line_and_import(tmp_path: Path) -> None:
    (tmp_path / "pipeline" / "inner").mkdir(parents=True)
    (tmp_path / "pipeline" / "inner" / "leak.py").write_text('"""Leak."""\nimport ledger.money\n')
    assert violations("pipeline", root=tmp_path) == ["pipeline.inner.leak (line 2) imports ledger"]


def test_the_packages_are_where_the_walker_looks() -> None:
    assert (ROOT / "pipeline" / "__init__.py").is_file()
    assert violations("pipeline") == []
    assert any(module == "asyncio" for _, module in
               imports_of((ROOT / "pipeline" / "stage.py").read_text(), package="pipeline"))
