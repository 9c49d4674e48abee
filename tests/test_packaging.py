"""Packaging: an installed (non-editable) package runs an experiment with `elm-run`, and every
package of the checkout ships (the layering between packages is tests/test_layers.py)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = ("environments", "mutators", "sandbox")


def test_every_package_of_the_checkout_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace(os.sep, ".")
             for top in ("elm", *PLUGIN_PACKAGES) for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "elm.conf" in listed


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with this project installed from a wheel build (not editable).

    Its dependencies come from the running interpreter's site-packages through a .pth line (no
    download); the project itself only from the venv's own site-packages.
    """
    where = tmp_path_factory.mktemp("fresh")
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    purelib = next(env_dir.glob("lib/python*/site-packages"))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_deps.pth").write_text("\n".join(deps) + "\n")
    build = where / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", "build",
                                                                 "*.egg-info", "__pycache__", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
                           "--no-deps", "--no-build-isolation", "-q", "--disable-pip-version-check", str(build)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir


def test_a_non_editable_install_runs_an_experiment_from_anywhere(installed, tmp_path):
    elm_run = installed / "bin" / "elm-run"
    assert elm_run.exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import elm, elm.config; print(elm.__file__); print(elm.config.CONF_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    module, conf = where.stdout.split()
    assert str(installed) in module and str(installed) in conf, where.stdout  # not the checkout
    proc = subprocess.run([str(elm_run), "mutator=gp", "sandbox=process", "budget.evaluations=40",
                           "loop.progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stopped         evaluation budget after 40 evaluations" in proc.stdout
    assert f"elm-run resume={tmp_path / 'run'}" in proc.stdout
    assert (tmp_path / "run" / "run.db").exists() and (tmp_path / "run" / "run_elm.log").exists()


def test_a_non_editable_install_runs_an_environment_built_on_a_built_in_one(installed, tmp_path):
    """A user's module importing ``environments`` (installed in the venv, not the checkout) starts;
    sandbox=process: this venv reaches its dependencies through a .pth line that a gVisor sandbox
    does not bind (tests/test_custom_env.py runs gVisor with the editable install)."""
    from tests.test_custom_env import DERIVED

    (tmp_path / "my_packing.py").write_text(DERIVED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONPATH=".")
    proc = subprocess.run([str(installed / "bin" / "elm-run"), "env._target_=my_packing.MyPacking", "mutator=gp",
                           "sandbox=process", "budget.evaluations=8", "loop.progress=false",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stopped         evaluation budget after 8 evaluations" in proc.stdout
