"""Fault injection: dead workers are restarted and their work re-issued, or recorded as lost — never dropped."""

from __future__ import annotations

import sqlite3

from elm.config import compose
from elm.runner import run

INPROC = "sandbox._target_=tests.elm.inprocess.InProcessSandbox"


def _cfg(*overrides: str) -> dict:
    return compose([INPROC, "mutator=gp", "loop.progress=false", "ray.evaluator_num_cpus=0", *overrides])


def _statuses(run_dir):
    conn = sqlite3.connect(run_dir / "run.db")
    try:
        return conn.execute("SELECT id, status, error FROM evaluations ORDER BY id").fetchall()
    finally:
        conn.close()


def test_dead_mutator_is_restarted_and_its_batch_reissued(ray_session, tmp_path):
    (tmp_path / "crash-once").write_text("x")
    cfg = _cfg("budget.evaluations=80")
    cfg["mutator"] = {"_target_": "tests.elm.inprocess.CrashOnceMutator", "marker_dir": str(tmp_path)}
    summary = run(cfg, run_dir=tmp_path / "r")
    rows = _statuses(tmp_path / "r")
    assert not (tmp_path / "crash-once").exists()  # the mutator's process really died
    assert summary.evaluations == 80 and len(rows) == 80
    assert [r[0] for r in rows] == list(range(80))  # the re-issued batch kept its ids
    assert "lost" not in {r[1] for r in rows} and "mutator_error" not in {r[1] for r in rows}


def test_evaluator_that_keeps_dying_gets_its_children_recorded_as_lost(ray_session, tmp_path):
    (tmp_path / "crash-always").write_text("x")
    cfg = _cfg("budget.evaluations=36", "loop.batch_size=16", "loop.max_in_flight=1",
               "sandbox._target_=tests.elm.inprocess.CrashAlwaysSandbox", f"sandbox.runtime_dir={tmp_path}")
    summary = run(cfg, run_dir=tmp_path / "r")
    rows = _statuses(tmp_path / "r")
    assert summary.evaluations == 36 and len(rows) == 36
    children = [r for r in rows if r[0] >= 4]
    assert children and all(r[1] == "lost" for r in children)
    assert all("died" in r[2] for r in children)
