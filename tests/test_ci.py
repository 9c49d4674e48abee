"""CI: `.ci/run` lints with ruff before the test suite, and the checkout passes that lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = [sys.executable, "-m", "ruff"]


def _commands(script: Path) -> list[str]:
    """The script's command lines, without comments and blank lines."""
    return [line.strip() for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_ci_run_lints_with_ruff_before_the_tests():
    commands = _commands(ROOT / ".ci" / "run")
    lint = [i for i, c in enumerate(commands) if c.split()[1:4] == ["-m", "ruff", "check"]]
    tests = [i for i, c in enumerate(commands) if c.split()[1:3] == ["-m", "pytest"]]
    assert lint and tests, f".ci/run must run `python -m ruff check` and `python -m pytest`, has {commands}"
    assert lint[0] < tests[0], "the linter runs first: it fails in seconds where the suite takes half an hour"
    assert commands[0] == "set -euo pipefail", "a failing lint must stop .ci/run"


def test_ruff_is_pinned_in_the_dev_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["optional-dependencies"]["dev"] if d.startswith("ruff")]
    assert len(pins) == 1 and "==" in pins[0], f"pin one ruff version in the dev extra, found {pins}"
    installed = subprocess.run([*RUFF, "--version"], capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        pytest.skip("ruff is not installed: bash .ci/setup.sh --dev")
    assert installed.stdout.split()[-1] == pins[0].split("==")[1], "the venv's ruff is not the pinned one"


@pytest.fixture(scope="module")
def ruff() -> list[str]:
    if subprocess.run([*RUFF, "--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("ruff is not installed: bash .ci/setup.sh --dev")
    return RUFF


def test_the_checkout_passes_the_lint(ruff):
    done = subprocess.run([*ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_lint_fails_on_an_unused_import(ruff, tmp_path):
    """The configured rules bite: the same command on a copy of the config with one bad module fails."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "bad.py").write_text("import os\n")
    done = subprocess.run([*ruff, "check", "--no-cache", "."], cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 1 and "F401" in done.stdout, done.stdout + done.stderr
