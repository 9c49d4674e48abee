"""Every built-in environment runs end to end: real config, Ray, sandbox and store, baseline mutator.

Candidates run in gVisor where runsc is available (the default backend),
otherwise in the process sandbox. Budgets are small (about a minute in all on
2 busy cores); runs are seeded and ordered, so their outcome is repeatable.
"""

from __future__ import annotations

import sqlite3

import pytest

from elm.config import compose
from elm.runner import run
from tests.conftest import HAVE_RUNSC

BACKEND = "gvisor" if HAVE_RUNSC else "process"

# env -> (budget, extra overrides)
RUNS = {
    "sodarace": (150, []),
    "image_evolution": (120, []),
    "bin_packing": (36, ["qd.qd_offset=-200"]),  # ~0.5 s per candidate: 35k items packed
}


@pytest.mark.parametrize("env_name", list(RUNS))
def test_environment_runs_end_to_end_with_the_baseline_mutator(ray_session, tmp_path, env_name):
    budget, extra = RUNS[env_name]
    cfg = compose([f"env={env_name}", "mutator=gp", f"sandbox={BACKEND}", f"budget.evaluations={budget}",
                   "loop.progress=false", "ray.evaluator_num_cpus=0", "seed=0", *extra])
    summary = run(cfg, run_dir=tmp_path / "run")
    print(f"\n{env_name} ({BACKEND}): {summary.format()}")
    assert summary.evaluations == budget and summary.stop_reason == "evaluation budget"
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status").fetchall())
    seeds = conn.execute("SELECT COUNT(*), MAX(fitness) FROM evaluations WHERE mutator='seed' AND status='ok'").fetchone()
    backend = conn.execute("SELECT value FROM meta WHERE key='sandbox_backend'").fetchone()[0]
    conn.close()
    assert backend == BACKEND
    assert seeds[0] == _seed_count(env_name)  # every seed evaluated ok in the sandbox
    assert statuses.get("ok", 0) >= budget // 3, statuses
    assert summary.max_fitness >= seeds[1]
    assert summary.coverage > summary.seed_coverage  # children found new cells
    assert summary.qd_score > summary.seed_qd_score
    assert (tmp_path / "run" / "elites.jsonl").read_text().count("\n") == summary.num_elites


def _seed_count(env_name: str) -> int:
    from elm.sandbox import EnvironmentSpec

    return len(EnvironmentSpec.from_config(compose([f"env={env_name}"])["env"]).build().seed_programs())
