from __future__ import annotations

import json
import sqlite3
import time

import pytest

from elm.store import SCHEMA_VERSION, EvaluationRecord, RunStore, StoreError
from elm.types import Elite


def _rec(i: int, **kw) -> EvaluationRecord:
    base = dict(id=i, parent_ids=(i - 1,) if i else (), mutator="gp" if i else "seed", generation=min(i, 1),
                source=f"x = {i}", status="ok", fitness=float(i), descriptor=(0.1 * i, 0.5), cell=i,
                archive_status="new_cell", info={"k": [1, 2]}, tokens_in=3, tokens_out=4)
    base.update(kw)
    return EvaluationRecord(**base)


def test_create_record_and_read_back(tmp_path):
    store = RunStore.create(tmp_path / "run", meta={"config": {"seed": 3}, "seed": 3})
    store.begin_session()
    recs = [_rec(i) for i in range(5)] + [_rec(5, status="error", fitness=None, descriptor=None, cell=None,
                                                 archive_status=None, error="Traceback ... ZeroDivisionError")]
    store.record(recs, metrics={"evaluations": 6, "wall_s": 1.0, "num_elites": 5, "coverage": 0.05,
                                "qd_score": 10.0, "norm_qd_score": 0.1, "max_fitness": 4.0, "mean_fitness": 2.0})
    store.end_session("evaluation budget")
    store.close()

    ro = RunStore.open(tmp_path / "run")
    assert ro.readonly
    assert ro.count() == 6 and ro.count(status="ok") == 5 and ro.max_id() == 5
    back = list(ro.iter_evaluations(chunk=2))
    assert [r.id for r in back] == list(range(6))
    assert back[3].descriptor == (0.30000000000000004, 0.5) and back[3].info == {"k": [1, 2]}
    assert back[3].parent_ids == (2,) and back[0].parent_ids == ()
    assert back[5].fitness is None and back[5].error.endswith("ZeroDivisionError")
    assert ro.tokens_used() == 6 * 7
    assert ro.status_counts() == {"ok": 5, "error": 1}
    assert ro.config() == {"seed": 3}
    assert int(ro.meta()["schema_version"]) == SCHEMA_VERSION
    assert ro.metrics()[0]["qd_score"] == 10.0
    # Plain SQLite readers see WAL mode and JSON columns.
    conn = sqlite3.connect(tmp_path / "run" / "run.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert json.loads(conn.execute("SELECT descriptor FROM evaluations WHERE id=1").fetchone()[0]) == [0.1, 0.5]
    with pytest.raises(StoreError, match="read-only"):
        ro.record([_rec(9)])


def test_non_finite_fitness_is_stored_as_null(tmp_path):
    store = RunStore.create(tmp_path, meta={})
    store.begin_session()
    store.record([_rec(0, fitness=float("nan")), _rec(1, fitness=float("inf"))])
    assert [r.fitness for r in store.iter_evaluations()] == [None, None]


def test_refuses_to_overwrite_and_explains_resume(tmp_path):
    RunStore.create(tmp_path, meta={}).close()
    with pytest.raises(StoreError, match="resume="):
        RunStore.create(tmp_path, meta={})


def test_open_missing_and_foreign_files(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        RunStore.open(tmp_path)
    sqlite3.connect(tmp_path / "run.db").execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.commit()
    with pytest.raises(StoreError, match="not an ELM run store"):
        RunStore.open(tmp_path)


def test_newer_schema_is_refused(tmp_path):
    store = RunStore.create(tmp_path, meta={})
    store.set_meta(schema_version=SCHEMA_VERSION + 1)
    store.close()
    with pytest.raises(StoreError, match="newer"):
        RunStore.open(tmp_path)


def test_unwritable_run_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create run directory"):
        RunStore.create(blocker / "run", meta={})


def test_sessions_accumulate_elapsed_time_and_detect_live_writer(tmp_path):
    store = RunStore.create(tmp_path, meta={})
    store.begin_session()
    time.sleep(0.05)
    store.record([_rec(0)])
    store.end_session("evaluation budget")
    first = store.elapsed_s()
    assert first >= 0.05
    store.begin_session()
    store.record([_rec(1)])
    # A second writer while this session heartbeats is refused.
    other = RunStore.open(tmp_path, readonly=False)
    with pytest.raises(StoreError, match="being written by another process"):
        other.begin_session()
    store.end_session("interrupted")
    assert [s["end_reason"] for s in store.sessions()] == ["evaluation budget", "interrupted"]
    assert store.run_wall_s() >= first


def test_crashed_session_is_closed_on_resume(tmp_path):
    store = RunStore.create(tmp_path, meta={})
    store.begin_session()
    store.record([_rec(0)])
    # Simulate a SIGKILLed writer: its pid no longer exists, its heartbeat is fresh.
    store._conn.execute("UPDATE sessions SET pid = 999999999")
    store.close()
    again = RunStore.open(tmp_path, readonly=False)
    again.begin_session()
    assert [s["end_reason"] for s in again.sessions()] == ["crashed", None]


def test_failed_batch_writes_nothing(tmp_path):
    store = RunStore.create(tmp_path, meta={})
    store.begin_session()
    store.record([_rec(0)])
    with pytest.raises(sqlite3.IntegrityError):
        store.record([_rec(1), _rec(0)])  # duplicate id in the batch: the whole batch rolls back
    assert store.count() == 1


def test_export_elites_jsonl(tmp_path):
    store = RunStore.create(tmp_path, meta={})
    elites = [Elite(id=3, cell=7, source="x=1", fitness=1.5, descriptor=(0.1, 0.2), parent_ids=(1,), mutator="gp")]
    assert store.export_elites(tmp_path / "elites.jsonl", elites) == 1
    row = json.loads((tmp_path / "elites.jsonl").read_text())
    assert row["id"] == 3 and row["cell"] == 7 and row["descriptor"] == [0.1, 0.2] and row["source"] == "x=1"


@pytest.fixture
def readonly_view(tmp_path):
    """``readonly_view(src)``: ``src`` seen through a read-only bind mount (root) or with mode 0555."""
    import os
    import subprocess

    mounts = []

    def make(src):
        if os.geteuid() != 0:
            os.chmod(src, 0o555)
            return src
        view = tmp_path / f"ro{len(mounts)}"
        view.mkdir()
        ok = subprocess.run(["mount", "--bind", str(src), str(view)], capture_output=True).returncode == 0
        if not ok:
            pytest.skip("cannot make a read-only bind mount here")
        mounts.append(view)
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        return view

    yield make
    for view in mounts:
        subprocess.run(["umount", str(view)], capture_output=True, check=False)


def test_finished_run_in_a_read_only_directory_opens(tmp_path, readonly_view):
    store = RunStore.create(tmp_path / "run", meta={"config": {}, "seed": 0})
    store.begin_session()
    store.record([_rec(i) for i in range(4)])
    store.end_session("evaluation budget")
    store.close()  # a clean close checkpoints and removes the write-ahead log
    assert not (tmp_path / "run" / "run.db-wal").exists()
    view = readonly_view(tmp_path / "run")
    with RunStore.open(view) as ro:
        assert ro.count() == 4 and [r.id for r in ro.iter_evaluations()] == [0, 1, 2, 3]


def test_killed_run_in_a_read_only_directory(tmp_path, readonly_view):
    import shutil

    store = RunStore.create(tmp_path / "run", meta={"config": {}, "seed": 0})
    store.begin_session()
    store.record([_rec(i) for i in range(4)])
    try:
        # The writer is "killed": its log and shared-memory index stay next to run.db; SQLite reads
        # them read-only.
        assert (tmp_path / "run" / "run.db-wal").stat().st_size > 0
        with RunStore.open(readonly_view(tmp_path / "run")) as ro:
            assert ro.count() == 4
        # Without the index (copied without it), the log cannot be read consistently: a clear error.
        (tmp_path / "copy").mkdir()
        for name in ("run.db", "run.db-wal"):
            shutil.copy(tmp_path / "run" / name, tmp_path / "copy" / name)
        with pytest.raises(StoreError, match="copy the run directory somewhere writable"):
            RunStore.open(readonly_view(tmp_path / "copy"))
    finally:
        store.close()
