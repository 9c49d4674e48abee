"""The command line end to end: real Hydra, real Ray, real sandboxes, real SQLite.

These start `python run_elm.py` as users do (each run starts its own Ray).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_elm.py", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _count(run_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'duplicate'").fetchone()[0]
    except sqlite3.OperationalError:  # the run has created the file but not yet its tables
        return 0
    finally:
        conn.close()


def _rows(run_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT id, parent_ids, source, status, fitness, cell FROM evaluations ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.gvisor
def test_default_run_in_gvisor_beats_its_seeds(tmp_path):
    run_dir = tmp_path / "run"
    proc = _run("budget.evaluations=200", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "run.db").exists() and (run_dir / "elites.jsonl").exists()
    assert _count(run_dir) == 200
    out = proc.stdout
    assert "coverage" in out and "QD score" in out and f"resume={run_dir}" in out
    rows = _rows(run_dir)
    assert sum(r[3] == "ok" for r in rows) > 50
    conn = sqlite3.connect(run_dir / "run.db")
    seeds = conn.execute("SELECT COUNT(DISTINCT cell), SUM(fitness) FROM evaluations "
                         "WHERE mutator='seed' AND status='ok'").fetchone()
    final = conn.execute("SELECT num_elites, qd_score FROM metrics ORDER BY evaluations DESC LIMIT 1").fetchone()
    assert final[0] > seeds[0] and final[1] > seeds[1]
    backend = conn.execute("SELECT value FROM meta WHERE key='sandbox_backend'").fetchone()[0]
    assert backend == "gvisor"


@pytest.mark.timeout(900)  # two runs of the default mutator (SmolLM2 + GP) on a loaded 2-core machine
def test_sigkill_mid_run_then_resume_keeps_every_finished_evaluation(tmp_path):
    backend = [] if _have_runsc() else ["sandbox=process"]
    run_dir = tmp_path / "run"
    args = [sys.executable, "run_elm.py", "budget.evaluations=360", "loop.batch_size=8", f"hydra.run.dir={run_dir}",
            "loop.progress=false", *backend]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (run_dir / "run.db").exists() and _count(run_dir) >= 120:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the run did not reach 120 evaluations in 300 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _rows(run_dir)
    assert 120 <= len(before) < 360
    resumed = _run(f"resume={run_dir}", "loop.progress=false", *backend)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _rows(run_dir)
    assert _count(run_dir) == 360  # duplicates (recorded, never evaluated) are not in the budget
    by_id = {r[0]: r for r in after}
    assert all(by_id[r[0]] == r for r in before)  # nothing finished before the kill was lost or changed
    conn = sqlite3.connect(run_dir / "run.db")
    reasons = [r[0] for r in conn.execute("SELECT end_reason FROM sessions ORDER BY id")]
    assert reasons == ["crashed", "evaluation budget"]
    assert (run_dir / "resumes").is_dir()  # the resume's own Hydra log, inside the run


def test_config_mistakes_fail_fast_with_clear_messages(tmp_path):
    start = time.time()
    proc = _run("env=sodaraec", f"hydra.run.dir={tmp_path / 'a'}")
    assert proc.returncode != 0 and "Could not find 'env/sodaraec'" in proc.stderr
    proc = _run("budget.evaluatons=5", f"hydra.run.dir={tmp_path / 'b'}")
    assert proc.returncode != 0 and "evaluatons" in proc.stderr
    proc = _run("qd.bounds=[[0,1],[1,0]]", "sandbox=process", f"hydra.run.dir={tmp_path / 'c'}")
    assert proc.returncode == 2 and "lower bound" in proc.stderr
    assert not (tmp_path / "c" / "run.db").exists()
    assert time.time() - start < 60  # no Ray start-up in any of them


def test_process_backend_is_labelled_unsafe(tmp_path):
    proc = _run("budget.evaluations=30", "sandbox=process", f"hydra.run.dir={tmp_path / 'r'}", "loop.progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "r" / "run_elm.log").read_text()
    assert "UNSAFE" in text
    assert "does not keep these from passing between candidates" in text and "keyrings" in text


def _have_runsc() -> bool:
    import shutil

    return shutil.which("runsc") is not None and os.geteuid() == 0


def test_ctrl_c_drains_flushes_and_summarises(tmp_path):
    """Ctrl-C in a terminal signals the whole foreground process group (Ray's processes included)."""
    backend = [] if _have_runsc() else ["sandbox=process"]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "run_elm.py", "budget.evaluations=5000", f"hydra.run.dir={run_dir}",
                             "loop.progress=false", *backend], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not ((run_dir / "run.db").exists() and _count(run_dir) >= 60):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert "finishing in-flight evaluations" in err
    assert "stopped         interrupted" in out and "QD score" in out
    rows = _rows(run_dir)
    assert len(rows) < 5000
    assert [r[0] for r in rows] == list(range(len(rows)))  # in-flight batches were drained, not dropped
    conn = sqlite3.connect(run_dir / "run.db")
    assert conn.execute("SELECT end_reason FROM sessions").fetchall() == [("interrupted",)]
    assert (run_dir / "elites.jsonl").exists()


def test_multirun_sweeps_seeds(tmp_path):
    proc = _run("-m", "seed=0,1", "budget.evaluations=24", "sandbox=process", "loop.progress=false",
                f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=seed${seed}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for seed in (0, 1):
        assert _count(tmp_path / f"seed{seed}") == 24


def test_resume_refuses_to_change_the_experiment(tmp_path):
    run_dir = tmp_path / "r"
    assert _run("budget.evaluations=20", "sandbox=process", f"hydra.run.dir={run_dir}").returncode == 0
    proc = _run(f"resume={run_dir}", "env.n=30")
    assert proc.returncode == 2 and "cannot change 'env.n' when resuming" in proc.stderr
    proc = _run(f"resume={run_dir}", "budget.evaluations=30", "loop.progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _count(run_dir) == 30
