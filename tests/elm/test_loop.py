"""The Ray loop end to end with the real archive, store, environment and GP mutator.

Evaluation uses an in-process test sandbox so these tests isolate the loop;
real sandboxes are covered in tests/sandbox and tests/test_cli.py.
"""

from __future__ import annotations

import sqlite3

import pytest

from elm.config import compose
from elm.runner import run
from elm.store import RunStore

INPROC = "sandbox._target_=tests.elm.inprocess.InProcessSandbox"


def _cfg(*overrides: str) -> dict:
    return compose([INPROC, "mutator=gp", "loop.progress=false", "ray.evaluator_num_cpus=0", *overrides])


def _rows(run_dir):
    conn = sqlite3.connect(run_dir / "run.db")
    rows = conn.execute(
        "SELECT id, parent_ids, mutator, source, status, fitness, descriptor, cell, archive_status "
        "FROM evaluations ORDER BY id").fetchall()
    conn.close()
    return rows


def test_run_fills_budget_and_improves_on_seeds(ray_session, tmp_path):
    summary = run(_cfg("budget.evaluations=240", "seed=1"), run_dir=tmp_path / "r")
    assert summary.evaluations == 240
    assert summary.stop_reason == "evaluation budget"
    rows = _rows(tmp_path / "r")
    assert len(rows) == 240
    assert [r[0] for r in rows] == list(range(240))  # ids dense when nothing was lost
    assert {r[2] for r in rows} == {"seed", "gp"}
    assert summary.coverage > summary.seed_coverage
    assert summary.qd_score > summary.seed_qd_score
    # Every child names parents that were evaluated ok before it.
    ok_ids = {r[0] for r in rows if r[4] == "ok"}
    for r in rows:
        if r[2] == "gp":
            parents = eval(r[1])
            assert parents and all(p in ok_ids and p < r[0] for p in parents)
    # Elites export matches the archive.
    lines = (tmp_path / "r" / "elites.jsonl").read_text().splitlines()
    assert len(lines) == summary.num_elites


def test_seeded_run_is_reproducible(ray_session, tmp_path):
    a = run(_cfg("budget.evaluations=150", "seed=7"), run_dir=tmp_path / "a")
    b = run(_cfg("budget.evaluations=150", "seed=7"), run_dir=tmp_path / "b")
    run(_cfg("budget.evaluations=150", "seed=8"), run_dir=tmp_path / "c")
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert _rows(tmp_path / "a") != _rows(tmp_path / "c")
    assert a.qd_score == b.qd_score


def test_resume_continues_budget_and_keeps_rows(ray_session, tmp_path):
    first = run(_cfg("budget.evaluations=100"), run_dir=tmp_path / "r")
    before = _rows(tmp_path / "r")
    assert first.evaluations == 100
    second = run(_cfg("budget.evaluations=180", f"resume={tmp_path / 'r'}"), run_dir=tmp_path / "ignored")
    after = _rows(tmp_path / "r")
    assert second.evaluations == 180 and second.new_evaluations == 80
    assert after[:100] == before
    assert len({r[0] for r in after}) == 180
    # The archive was rebuilt from the store: the resumed run cannot be worse.
    assert second.qd_score >= first.qd_score
    with RunStore.open(tmp_path / "r") as store:
        sessions = store.sessions()
    assert [s["end_reason"] for s in sessions] == ["evaluation budget", "evaluation budget"]
    assert not (tmp_path / "ignored").exists()


def test_resume_of_finished_run_does_nothing_more(ray_session, tmp_path):
    run(_cfg("budget.evaluations=60"), run_dir=tmp_path / "r")
    again = run(_cfg("budget.evaluations=60", f"resume={tmp_path / 'r'}"), run_dir=tmp_path / "x")
    assert again.new_evaluations == 0 and again.evaluations == 60


def test_stored_parents_are_those_the_mutator_used_among_those_it_was_given(ray_session, tmp_path):
    # GP with p_crossover names one of its two parents for an edited copy (checked in
    # tests/mutators/test_gp.py); a mutator naming a parent it was not given gets all it was given
    cfg = _cfg("budget.evaluations=40")
    cfg["mutator"] = {"_target_": "tests.elm.inprocess.ForeignParentsMutator"}
    run(cfg, run_dir=tmp_path / "r")
    rows = _rows(tmp_path / "r")
    ids = {r[0] for r in rows}
    children = [eval(r[1]) for r in rows if r[2] == "foreign"]
    assert children and all(len(p) == 2 and set(p) <= ids for p in children)


def test_mutator_returning_wrong_count_is_recorded_not_dropped(ray_session, tmp_path):
    cfg = _cfg("budget.evaluations=40")
    cfg["mutator"] = {"_target_": "tests.elm.inprocess.WrongCountMutator"}
    summary = run(cfg, run_dir=tmp_path / "r")
    rows = _rows(tmp_path / "r")
    assert summary.evaluations == 40 and len(rows) == 40
    children = [r for r in rows if r[2] != "seed"]
    assert children and all(r[4] == "mutator_error" for r in children)
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    (err,) = conn.execute("SELECT error FROM evaluations WHERE status='mutator_error' LIMIT 1").fetchone()
    assert "exactly one per group" in err


def test_evaluator_death_is_retried(ray_session, tmp_path):
    (tmp_path / "crash-once").write_text("x")
    cfg = _cfg("budget.evaluations=80", "sandbox._target_=tests.elm.inprocess.CrashOnceSandbox",
               f"sandbox.runtime_dir={tmp_path}")
    summary = run(cfg, run_dir=tmp_path / "r")
    rows = _rows(tmp_path / "r")
    assert not (tmp_path / "crash-once").exists()  # the worker really died once
    assert summary.evaluations == 80 and len(rows) == 80
    assert "lost" not in {r[4] for r in rows}


def test_full_disk_stops_with_a_clear_error_and_an_intact_store(ray_session, tmp_path, monkeypatch):
    """SQLite's max_page_count makes the database 'full' at a chosen size, like a full disk."""
    from elm.store import RunStore, StoreError

    original = RunStore.begin_session

    def begin_then_cap(self, **kw):
        session = original(self, **kw)
        (pages,) = self._conn.execute("PRAGMA page_count").fetchone()
        self._conn.execute(f"PRAGMA max_page_count = {pages + 12}")
        return session

    monkeypatch.setattr(RunStore, "begin_session", begin_then_cap)
    with pytest.raises(StoreError, match="full"):
        run(_cfg("budget.evaluations=2000"), run_dir=tmp_path / "r")
    monkeypatch.setattr(RunStore, "begin_session", original)
    rows = _rows(tmp_path / "r")
    assert 0 < len(rows) < 2000
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Every recorded batch is complete: ids are dense from 0 (no half-written batch).
    assert [r[0] for r in rows] == list(range(len(rows)))
    # Once space is available again the run resumes and completes its budget.
    resumed = run(_cfg("budget.evaluations=300", f"resume={tmp_path / 'r'}"), run_dir=tmp_path / "x")
    assert resumed.evaluations == 300


def test_no_valid_seed_stops_at_start_with_each_seeds_reason(ray_session, tmp_path):
    from elm.loop import RunError

    cfg = _cfg("budget.evaluations=50", "env.n=2")
    cfg["env"]["_target_"] = "tests.elm.test_loop.BrokenSeeds"
    with pytest.raises(RunError, match=r"no seed program .* seed 0: error .*ZeroDivisionError.* seed 1: syntax_error"):
        run(cfg, run_dir=tmp_path / "r")


from environments.circle_packing import CirclePacking  # noqa: E402


class BrokenSeeds(CirclePacking):
    def seed_programs(self):
        return ["def pack():\n    return 1 / 0\n", "def pack(:\n"]
