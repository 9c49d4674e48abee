"""The custom-environment plug-in path, exactly as docs/environments.md shows it, and user mistakes.

* The documented module and config are written into a fresh directory outside
  this repository, checked locally with the documented command, and run with
  the documented command (gVisor when available): the module is imported by
  the driver, the Ray actors and inside the sandbox, with no file of the
  package touched.
* Every mistake the docs list for a user's environment is a clear start-up
  error or a per-candidate status, never a crash of the run.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from elm.config import compose
from elm.loop import RunError
from elm.runner import ConfigError, run
from tests.conftest import HAVE_RUNSC

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "environments.md").read_text()
EXAMPLE = ROOT / "examples" / "custom_env"
BACKEND = "gvisor" if HAVE_RUNSC else "process"


def _block(language: str, first_line: str) -> str:
    """The fenced ``language`` block of the docs whose first line starts with ``first_line``."""
    for body in re.findall(rf"```{language}\n(.*?)```", DOCS, flags=re.S):
        if body.startswith(first_line):
            return body
    raise AssertionError(f"docs/environments.md has no ```{language} block starting with {first_line!r}")


MODULE = _block("python", "# my_env.py")
CONFIG = _block("yaml", "# conf/env/curve_fit.yaml")
CHECK = _block("bash", "cd my_project\nPYTHONPATH=. python -c")
RUN = _block("bash", "cd my_project\nPYTHONPATH=. $ELM")


@pytest.fixture
def project(tmp_path) -> Path:
    """A user's project directory built from the docs, outside the repository."""
    root = tmp_path / "my_project"
    (root / "conf" / "env").mkdir(parents=True)
    (root / "my_env.py").write_text(MODULE)
    (root / "conf" / "env" / "curve_fit.yaml").write_text(CONFIG)
    return root


def _shell(script: str, project: Path, extra_args: str = "") -> subprocess.CompletedProcess:
    """Run a documented bash block from the project's parent, as a user would type it."""
    script = script.replace("$ELM/.venv/bin/python", sys.executable).rstrip() + extra_args
    env = {**os.environ, "ELM": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", "-ec", script], cwd=project.parent, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_example_files_are_the_documented_ones():
    assert (EXAMPLE / "my_env.py").read_text() == MODULE
    assert (EXAMPLE / "conf" / "env" / "curve_fit.yaml").read_text() == CONFIG
    assert len(MODULE.splitlines()) <= 30


def test_documented_local_check(project):
    proc = _shell(CHECK, project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("Evaluation(fitness=") for line in lines)


def test_documented_run_from_the_users_own_directory(project):
    run_dir = project / "run"
    proc = _shell(RUN, project, f" sandbox={BACKEND} budget.evaluations=120 loop.progress=false "
                                f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "coverage" in proc.stdout and "QD score" in proc.stdout
    conn = sqlite3.connect(run_dir / "run.db")
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status").fetchall())
    seed_best = conn.execute("SELECT MAX(fitness) FROM evaluations WHERE mutator='seed'").fetchone()[0]
    best = conn.execute("SELECT MAX(fitness) FROM evaluations WHERE status='ok'").fetchone()[0]
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('environment', 'sandbox_backend')"))
    conn.close()
    assert meta == {"environment": "curve_fit", "sandbox_backend": BACKEND}
    # duplicates of programs already evaluated are recorded but not evaluated, nor counted in the budget
    assert sum(statuses.values()) - statuses.get("duplicate", 0) == 120 and statuses["ok"] >= 40, statuses
    assert best > seed_best  # evolution improved on the seeds
    assert not (ROOT / "conf" / "env" / "curve_fit.yaml").exists()  # nothing added to the package


def test_forgetting_pythonpath_is_a_clear_start_up_error(project):
    command = RUN.replace("PYTHONPATH=. ", "")
    proc = _shell(command, project, f" sandbox=process hydra.run.dir={project / 'run'}")
    assert proc.returncode == 2
    assert "error: env: cannot import module 'my_env'" in proc.stderr and "PYTHONPATH" in proc.stderr
    assert not (project / "run" / "run.db").exists()


# ---------------------------------------------------------------- mistakes in a user's environment

FAULTY = "tests.environments.faulty_env.FaultyEnv"


def _faulty_cfg(*overrides: str, **env_kwargs) -> dict:
    cfg = compose(["sandbox=process", "mutator=gp", "loop.progress=false", "ray.evaluator_num_cpus=0", *overrides])
    cfg["env"] = {"_target_": FAULTY, **env_kwargs}
    return cfg


def _outcomes(run_dir: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(run_dir / "run.db")
    rows = conn.execute("SELECT source, status, error, cell FROM evaluations ORDER BY id").fetchall()
    conn.close()
    return {re.search(r"return '(\w+)'", src).group(1): (status, error or "", cell)
            for src, status, error, cell in rows}


@pytest.mark.parametrize("policy", ["clip", "reject"])
def test_each_mistake_in_score_is_a_per_candidate_status(ray_session, tmp_path, policy):
    from tests.environments.faulty_env import TAGS

    cfg = _faulty_cfg(f"budget.evaluations={len(TAGS)}", f"qd.out_of_bounds={policy}")
    summary = run(cfg, run_dir=tmp_path / "run")
    assert summary.evaluations == len(TAGS) and summary.stop_reason == "evaluation budget"
    got = _outcomes(tmp_path / "run")
    assert got["ok"][0] == "ok"
    assert got["score_raises"][0] == "error"
    assert "environment score() raised" in got["score_raises"][1] and "KeyError" in got["score_raises"][1]
    assert got["short_descriptor"][:2] == (
        "invalid", "descriptor has 1 values but the environment declares 2 (['a', 'b'])")
    assert got["nan_fitness"][:2] == ("invalid", "fitness is not finite (nan)")
    assert got["inf_descriptor"][:2] == ("invalid", "descriptor values not finite for ['b']")
    assert got["not_evaluation"][:2] == ("invalid", "score() must return elm.Evaluation, got float")
    if policy == "clip":
        assert got["out_of_bounds"][0] == "ok" and got["out_of_bounds"][2] == 3 * 4 + 0  # edge cell (a=3, b=0)
    else:
        assert got["out_of_bounds"][0] == "out_of_bounds" and "outside bounds" in got["out_of_bounds"][1]


def test_every_seed_failing_stops_the_run_at_start_with_each_reason(ray_session, tmp_path):
    cfg = _faulty_cfg("budget.evaluations=50", tags=["score_raises", "nan_fitness"])
    with pytest.raises(RunError) as info:
        run(cfg, run_dir=tmp_path / "run")
    message = str(info.value)
    assert "no seed program of environment 'faulty' evaluated ok" in message
    assert "seed 0: error" in message and "KeyError" in message
    assert "seed 1: invalid fitness is not finite (nan)" in message


@pytest.mark.parametrize("env_cfg,reason", [
    ({"_target_": FAULTY, "fail_init": True}, "FaultyEnv could not load its data"),
    ({"_target_": FAULTY, "no_such_argument": 1}, "no_such_argument"),
    ({"_target_": "tests.environments.faulty_env.NoSuchEnv"}, "has no attribute 'NoSuchEnv'"),
    ({"_target_": "no_such_module.Env"}, "cannot import module 'no_such_module'"),
])
def test_an_environment_that_cannot_be_built_fails_before_anything_starts(tmp_path, env_cfg, reason):
    cfg = compose(["sandbox=process"])
    cfg["env"] = env_cfg
    with pytest.raises(ConfigError, match=reason) as info:
        run(cfg, run_dir=tmp_path / "run")
    assert str(info.value).startswith("env: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fault,reason", [
    ("descriptor_space_raises", r"FaultyEnv.descriptor_space raised AttributeError: .*bins_per_dim"),
    ("seeds_raise", r"FaultyEnv.seed_programs\(\) raised FileNotFoundError: seeds/ directory missing"),
    ("seeds_not_a_list", r"must return a list of program sources \(str\), got str"),
    ("seed_not_str", r"must return Python source strings; item\(s\) \[1\] are bytes"),
    ("no_seeds", r"returned no programs"),
])
def test_a_broken_descriptor_space_or_seed_list_fails_before_anything_starts(tmp_path, fault, reason):
    import ray

    was_running = ray.is_initialized()
    cfg = compose(["sandbox=process"])
    cfg["env"] = {"_target_": FAULTY, "fault": fault}
    with pytest.raises(ConfigError, match=reason) as info:
        run(cfg, run_dir=tmp_path / "run")
    assert str(info.value).startswith("env: ")
    assert not (tmp_path / "run").exists() and ray.is_initialized() == was_running


# ---------------------------------------------------------------- an environment built on a built-in one

DERIVED = '''\
# my_packing.py: the built-in circle packing with one seed of my own
from environments.circle_packing import CirclePacking


class MyPacking(CirclePacking):
    name = "my_packing"

    def seed_programs(self):
        return [*super().seed_programs(), "import numpy as np\\ndef pack():\\n    return None\\n"]
'''


@pytest.mark.parametrize("backend", ["process", pytest.param("gvisor", marks=pytest.mark.gvisor)])
def test_an_environment_that_imports_a_built_in_one_runs(tmp_path, backend):
    """Its module imports ``environments`` (a package of this checkout, not the user's): the sandbox
    must see that package too, whichever way the project is installed (here: editable)."""
    if backend == "gvisor" and not HAVE_RUNSC:
        pytest.skip("runsc is not installed")
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "my_packing.py").write_text(DERIVED)
    run_dir = project / "run"
    script = ("cd my_project\nPYTHONPATH=. $ELM/.venv/bin/python -m elm.cli env=circle_packing "
              "env._target_=my_packing.MyPacking")
    proc = _shell(script, project, f" sandbox={backend} mutator=gp budget.evaluations=12 loop.progress=false "
                                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    conn = sqlite3.connect(run_dir / "run.db")
    seeds = conn.execute("SELECT status FROM evaluations WHERE mutator='seed' ORDER BY id").fetchall()
    environment = conn.execute("SELECT value FROM meta WHERE key='environment'").fetchone()[0]
    conn.close()
    assert environment == "my_packing"
    # the four built-in seeds pack circles; the user's returns nothing, which score() rejects
    assert [s for (s,) in seeds] == ["ok"] * 4 + ["invalid"], seeds
