"""Layering, read from the import statements of every module (any depth, including function bodies):

* elm/ (the engine) imports no plugin package: environments, mutators and sandboxes are found by
  their ``_target_`` path (elm.plugins);
* the shipped packages import neither tests nor benchmarks (neither is installed);
* tests never import benchmarks (benchmarks are run by hand; what both need lives in a package,
  e.g. elm.dashboard.testing, sandbox.soak), and benchmarks never import tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = ("environments", "mutators", "sandbox")
SHIPPED = ("elm", *PLUGIN_PACKAGES)


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the module at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def offenders(tops: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {top}"
            for top in tops for path in sorted((ROOT / top).rglob("*.py"))
            for line, imported in imported_packages(path) if imported in forbidden]


def test_the_engine_imports_no_plugin_package():
    assert offenders(("elm",), PLUGIN_PACKAGES) == []


def test_shipped_packages_import_neither_tests_nor_benchmarks():
    assert offenders(SHIPPED, ("tests", "benchmarks")) == []


def test_tests_never_import_benchmarks():
    assert offenders(("tests",), ("benchmarks",)) == []


def test_benchmarks_never_import_tests():
    assert offenders(("benchmarks",), ("tests",)) == []


@pytest.mark.parametrize("source, expected", [
    ("import benchmarks.bench_dashboard\n", [(1, "benchmarks")]),
    ("def f():\n    from benchmarks.soak_sandbox import run_soak\n", [(2, "benchmarks")]),
    ("from . import sibling\nimport os.path\n", [(2, "os")]),
])
def test_imported_packages_sees_nested_and_skips_relative_imports(tmp_path, source, expected):
    module = tmp_path / "m.py"
    module.write_text(source)
    assert imported_packages(module) == expected
