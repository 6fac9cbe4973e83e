"""Packages depend downward only: core < schemas < producers, consumers < dashboard < faceaudit.

Each package may import itself, the packages below it, the standard library
and third-party libraries; producers and consumers stand side by side and
import neither the other. Imports are read from the source (`ast`), including
those inside functions and under `TYPE_CHECKING`, so a lazy import cannot
hide a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

BELOW: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "schemas": frozenset({"core"}),
    "producers": frozenset({"core", "schemas"}),
    "consumers": frozenset({"core", "schemas"}),
    "dashboard": frozenset({"core", "schemas", "consumers"}),
    "faceaudit": frozenset({"core", "schemas", "producers", "consumers", "dashboard"}),
}
# Ours but never importable from a package: the benchmark harness and the tests.
OURS = frozenset(BELOW) | {"bench", "tests"}


def imported_packages(source: str) -> set[str]:
    """The top-level names of the absolute imports in a module's source."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(BELOW))
def test_package_imports_only_downward(package: str) -> None:
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert files, f"package {package}/ has no modules"
    allowed = BELOW[package] | {package}
    wrong = [
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_packages(path.read_text()) & (OURS - allowed))
    ]
    assert not wrong, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_lazy_and_type_checking_imports_count_and_relative_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from producers.fleet import Fleet\n"
        "def f():\n"
        "    import faceaudit.cli\n"
    )
    assert imported_packages(source) == {"typing", "producers", "faceaudit"}
