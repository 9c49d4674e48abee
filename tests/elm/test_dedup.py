"""Duplicate detection: canonical forms, the index, and a run that never evaluates a program twice."""

from __future__ import annotations

import sqlite3

import pytest

from elm.config import compose
from elm.dedup import KEY_VERSION, DuplicateIndex, canonical_form, program_key
from elm.runner import run
from elm.store import RunStore

BASE = '''
import numpy as np

def pack(n=26):
    """Lay out the circles."""
    rows = 5  # a comment
    xs = np.linspace(0.1, 0.9, rows)
    def shrink(v):
        return v * 0.5
    try:
        pass
    except ValueError as exc:
        raise
    return [shrink(x) for x in xs]
'''
SAME = '''import numpy as np
def pack(n = 26):
    r = 5
    pts = np.linspace(0.1, 0.9, r)      # reformatted, renamed, no docstring
    def half(q):
        return q * 0.5
    try:
        pass
    except ValueError as e:
        raise
    return [half(p) for p in pts]
'''


@pytest.mark.parametrize("other, same", [
    (SAME, True),
    (BASE.replace("0.5", "0.25"), False),  # a constant changed
    (BASE.replace("np.linspace", "np.geomspace"), False),  # an attribute changed
    (BASE.replace("def pack(", "def layout("), False),  # the entry point's name is behaviour
    (BASE.replace("import numpy as np", "import numpy as npy").replace("np.", "npy."), False),  # module globals kept
    (BASE.replace("rows = 5", "rows = 5\n    rows = rows"), False),  # an extra statement
])
def test_canonical_form_ignores_only_what_cannot_change_behaviour(other, same):
    assert (program_key(BASE) == program_key(other)) is same
    assert (canonical_form(BASE) == canonical_form(other)) is same


def test_programs_without_a_canonical_form_have_no_key():
    assert program_key("def f(:\n") is None and program_key(None) is None
    assert program_key("x = 1\n") == program_key("x = 1  # same\n")


def test_index_claims_first_and_releases_outcomes_that_say_nothing_about_the_program():
    index = DuplicateIndex()
    assert index.claim("k", 3) is None and index.claim("k", 3) is None  # re-claiming is idempotent
    assert index.claim("k", 9) == 3 and index.claim(None, 10) is None
    index.settle("k", 3, "timeout")  # a timeout under load: let the next copy run
    assert index.claim("k", 11) is None and index.claim("k", 12) == 11
    index.settle("k", 11, "invalid")  # a real verdict stays
    assert index.claim("k", 13) == 11


def _cfg(tmp_path, *overrides):
    cfg = compose(["sandbox._target_=tests.elm.inprocess.CountingSandbox", f"sandbox.runtime_dir={tmp_path}",
                   "loop.progress=false", "ray.evaluator_num_cpus=0", "loop.batch_size=8", "search.dedup=true",
                   *overrides])
    cfg["mutator"] = {"_target_": "mutators.mixture.MixtureMutator", "components": {
        "gp": {"_target_": "mutators.gp.GPMutator", "weight": 1.0},
        "echo": {"_target_": "tests.elm.inprocess.EchoMutator", "weight": 1.0}}}
    return cfg


def test_a_run_records_duplicates_without_evaluating_or_counting_them(ray_session, tmp_path):
    summary = run(_cfg(tmp_path, "budget.evaluations=120", "seed=2"), run_dir=tmp_path / "r")
    evaluated = [int(x) for x in (tmp_path / "evaluated").read_text().split()]
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    rows = conn.execute("SELECT id, mutator, status, program_key, duplicate_of FROM evaluations").fetchall()
    conn.close()
    dups = [r for r in rows if r[2] == "duplicate"]
    by_id = {r[0]: r for r in rows}
    assert len(dups) >= 30  # every echo child repeats its parent
    assert {r[1] for r in dups} >= {"echo"}
    for r in dups:
        original = by_id[r[4]]
        assert original[3] == r[3] and original[2] != "duplicate" and r[4] < r[0]
        assert r[0] not in evaluated  # never sent to a sandbox
    assert len(evaluated) == len(set(evaluated))
    assert summary.evaluations == 120 == len(rows) - len(dups)  # duplicates are not in the budget
    assert summary.status_counts["duplicate"] == len(dups)
    with RunStore.open(tmp_path / "r") as store:
        from elm.stats import mutator_stats

        stats = {s.mutator: s for s in mutator_stats(store)}
    assert stats["echo"].duplicates == sum(r[1] == "echo" for r in dups)


def test_resume_remembers_what_was_evaluated(ray_session, tmp_path):
    run(_cfg(tmp_path, "budget.evaluations=60", "seed=4"), run_dir=tmp_path / "r")
    first = set((tmp_path / "evaluated").read_text().split())
    cfg = _cfg(tmp_path, "budget.evaluations=120")
    cfg["resume"] = str(tmp_path / "r")
    run(cfg, run_dir=tmp_path / "r")
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    keys = conn.execute("SELECT program_key, COUNT(*) FROM evaluations WHERE status != 'duplicate' "
                        "AND program_key IS NOT NULL GROUP BY program_key HAVING COUNT(*) > 1").fetchall()
    late_dups = conn.execute("SELECT COUNT(*) FROM evaluations WHERE status = 'duplicate' AND duplicate_of IN "
                             f"({','.join(first)})").fetchone()[0]
    conn.close()
    assert keys == []  # no program evaluated twice across the resume
    assert late_dups > 0  # children after the resume were recognised as copies of earlier programs


def test_a_run_resumed_under_another_python_recomputes_its_stored_keys(ray_session, tmp_path):
    run(_cfg(tmp_path, "budget.evaluations=60", "seed=4"), run_dir=tmp_path / "r")
    first = set((tmp_path / "evaluated").read_text().split())
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    assert conn.execute("SELECT value FROM meta WHERE key = 'dedup_key_version'").fetchone() == (KEY_VERSION,)
    # what another Python's ast.dump would have left: other keys, another version recorded
    conn.execute("UPDATE evaluations SET program_key = 'x' || program_key WHERE program_key IS NOT NULL")
    conn.execute("UPDATE meta SET value = 'python3.99' WHERE key = 'dedup_key_version'")
    conn.commit()
    conn.close()
    cfg = _cfg(tmp_path, "budget.evaluations=120")
    cfg["resume"] = str(tmp_path / "r")
    run(cfg, run_dir=tmp_path / "r")
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    rows = conn.execute("SELECT id, source, status, program_key FROM evaluations").fetchall()
    version = conn.execute("SELECT value FROM meta WHERE key = 'dedup_key_version'").fetchone()
    late_dups = conn.execute("SELECT COUNT(*) FROM evaluations WHERE status = 'duplicate' AND duplicate_of IN "
                             f"({','.join(first)})").fetchone()[0]
    conn.close()
    assert version == (KEY_VERSION,)
    # every stored key is this Python's again, and no program was evaluated twice across the resume
    assert all(key == program_key(source) for _, source, status, key in rows if key is not None)
    evaluated_keys = [key for _, _, status, key in rows if status != "duplicate" and key is not None]
    assert len(evaluated_keys) == len(set(evaluated_keys))
    assert late_dups > 0  # copies of programs from before the resume were recognised
