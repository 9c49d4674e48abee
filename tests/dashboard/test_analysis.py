"""elm.analysis: a run's store as DataFrames, checked against the run's own archive export."""

from __future__ import annotations

import json
import sqlite3

import pytest

pd = pytest.importorskip("pandas")

from elm.analysis import combined_metrics, find_runs, load_run  # noqa: E402
from elm.dashboard.testing import make_synthetic_run  # noqa: E402
from elm.store import EvaluationRecord, RunStore, StoreError  # noqa: E402


def _store_rows(run_dir, sql):
    conn = sqlite3.connect(run_dir / "run.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_elites_match_the_runs_own_archive_export(small_runs):
    for run_dir in small_runs:
        exported = {e["cell"]: e for e in map(json.loads, (run_dir / "elites.jsonl").read_text().splitlines())}
        with load_run(run_dir) as run:
            elites = run.elites(with_source=True)
            assert sorted(elites["cell"]) == sorted(exported)
            for cell, row in elites.iterrows():
                e = exported[cell]
                assert (row["id"], row["fitness"], row["source"]) == (e["id"], e["fitness"], e["source"])
                assert (row["radius_cv"], row["border_fraction"]) == tuple(e["descriptor"])
                assert row["parent_ids"] == e["parent_ids"] and row["generation"] == e["generation"]
            s = run.summary()
            final = run.metrics().iloc[-1]
            assert s["num_elites"] == len(exported) == final["num_elites"]
            assert s["qd_score"] == pytest.approx(final["qd_score"])
            assert s["max_fitness"] == pytest.approx(final["max_fitness"])
            assert s["coverage"] == pytest.approx(final["coverage"])
            assert s["evaluations"] == 120 and s["state"] == "finished (evaluation budget)"


def test_evaluations_frame_has_every_row_and_decoded_columns(small_runs):
    run_dir = small_runs[0]
    (count,) = _store_rows(run_dir, "SELECT COUNT(*) FROM evaluations")[0]
    with load_run(run_dir) as run:
        evals = run.evaluations()
        assert len(evals) == count == 120
        assert "source" not in evals.columns
        assert {"radius_cv", "border_fraction", "fitness", "status", "cell", "parent_ids", "info"} <= set(evals.columns)
        ok = evals[evals["status"] == "ok"]
        assert ok["radius_cv"].notna().all() and ok["cell"].notna().all()
        assert evals.loc[evals["status"] != "ok", "fitness"].isna().all()
        assert all(isinstance(p, list) for p in evals["parent_ids"])
        seeds = run.evaluations(mutator="seed", with_source=True)
        assert len(seeds) == 4 and seeds["source"].str.contains("def pack").all()
        assert len(run.evaluations(status="ok")) == len(ok)
        counts = run.status_counts()
        assert counts.sum() == count and counts["ok"] == len(ok)


def test_mutator_stats_and_outcomes_add_up(small_runs):
    with load_run(small_runs[0]) as run:
        evals = run.evaluations()
        stats = run.mutator_stats()
        assert stats["evaluations"].sum() == len(evals)
        gp = evals[evals["mutator"] == "gp"]
        gp_stats = stats[stats["mutator"] == "gp"]
        assert gp_stats["valid"].sum() == (gp["status"] == "ok").sum()
        assert gp_stats["inserted"].sum() == gp["archive_status"].isin(["new_cell", "improved"]).sum()
        assert gp_stats["new_cells"].sum() == (gp["archive_status"] == "new_cell").sum()
        for col in ("valid_rate", "insertion_rate", "new_cell_rate"):
            assert stats[col].between(0, 1).all()
        assert stats["window_start"].nunique() > 2  # small runs still get several windows
        totals = run.mutator_totals().set_index("mutator")
        assert totals.loc["gp", "valid_rate"] == pytest.approx((gp["status"] == "ok").mean())
        # any window width works; widths off the tally's buckets are counted afresh in SQL
        for window in (7, 50):
            w = run.mutator_stats(window=window)
            assert w["evaluations"].sum() == len(evals) and (w["window_start"] % window == 0).all()
        outcomes = run.outcomes(window=40)
        assert outcomes.groupby("status")["evaluations"].sum().to_dict() == evals["status"].value_counts().to_dict()
        assert set(outcomes["window_start"]) == {0, 40, 80}
        tp = run.throughput()
        assert len(tp) >= 2 and (tp["evals_per_s"] > 0).all()


def test_lineage_goes_back_to_a_seed_and_diff_shows_the_change(small_runs):
    with load_run(small_runs[1]) as run:
        elites = run.elites()
        deepest = elites.sort_values("generation").iloc[-1]
        assert deepest["generation"] >= 1
        chain = run.lineage(int(deepest["id"]))
        assert chain.iloc[0]["mutator"] == "seed" and chain.iloc[0]["parent_ids"] == []
        assert chain.iloc[-1]["id"] == deepest["id"]
        assert list(chain["generation"]) == list(range(len(chain)))
        for parent, child in zip(chain.itertuples(), chain.iloc[1:].itertuples()):
            assert child.parent_ids[0] == parent.id
        diff = run.diff_to_parent(int(deepest["id"]))
        assert diff.startswith(f"--- #{chain.iloc[-2]['id']}\n+++ #{int(deepest['id'])}")
        assert run.diff_to_parent(int(chain.iloc[0]["id"])) == ""
        with pytest.raises(LookupError, match="has no evaluation 99999"):
            run.lineage(99999)


def test_a_run_that_keeps_writing_is_followed_incrementally(tmp_path):
    run_dir = make_synthetic_run(tmp_path / "r", evaluations=1200, batch=100)
    with load_run(run_dir) as run:
        before = run.summary()
        assert before["evaluations"] == 1200
        store = RunStore.open(run_dir, readonly=False)
        try:
            store.begin_session()
            cell = next(c for c in range(144) if c not in run.cell_fitness())
            store.record([EvaluationRecord(id=1200, parent_ids=(0,), mutator="gp", generation=1, source="x=1",
                                           status="ok", fitness=100.0, descriptor=(0.5, 0.5), cell=cell,
                                           archive_status="new_cell")])
            assert run.cell_fitness()[cell] == (100.0, 1200)  # incremental: only the new row read
            # A batch whose ids lie below ones already seen (several evaluator actors): recount all.
            store.record([EvaluationRecord(id=5000, parent_ids=(0,), mutator="gp", generation=1, source="y",
                                           status="invalid")])
            run.summary()
            store.record([EvaluationRecord(id=1500, parent_ids=(0,), mutator="llm", generation=1, source="z",
                                           status="ok", fitness=200.0, descriptor=(0.5, 0.5), cell=cell,
                                           archive_status="improved")])
        finally:
            store.close()
        after = run.summary()
        assert after["evaluations"] == 1203
        assert run.cell_fitness()[cell] == (200.0, 1500)
        with load_run(run_dir) as fresh:  # same answers as a reader that starts from scratch
            assert fresh.cell_fitness() == run.cell_fitness()
            pd.testing.assert_frame_equal(fresh.mutator_stats(), run.mutator_stats())
        assert run.mutator_stats()["evaluations"].sum() == 1203


def test_ties_keep_the_earliest_evaluation_like_the_archive(tmp_path):
    run_dir = make_synthetic_run(tmp_path / "r", evaluations=4)
    store = RunStore.open(run_dir, readonly=False)
    try:
        store.begin_session()
        store.record([EvaluationRecord(id=i, parent_ids=(0,), mutator="gp", generation=1, source=f"v{i}",
                                       status="ok", fitness=50.0, descriptor=(0.99, 0.99), cell=143,
                                       archive_status="new_cell" if i == 10 else "not_added")
                      for i in (10, 11, 12)])
    finally:
        store.close()
    with load_run(run_dir) as run:
        assert run.cell_fitness()[143] == (50.0, 10)
        assert run.elite(143)["source"] == "v10"


def test_paths_that_are_not_runs_are_refused_with_the_fix(tmp_path, small_runs):
    with pytest.raises(StoreError, match="does not exist: give a run directory"):
        find_runs(tmp_path / "nope")
    with pytest.raises(StoreError, match="no run store at .*nope: expected a run directory containing run.db"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="is not a run directory: it holds no run.db"):
        find_runs(tmp_path / "empty")
    with pytest.raises(StoreError, match="no run store"):
        load_run(tmp_path / "empty")
    # a sweep directory stands for the runs below it
    sweep = small_runs[0].parent
    assert find_runs(sweep) == sorted(small_runs)
    assert find_runs(small_runs[0] / "run.db") == [small_runs[0]]
    runs = [load_run(d) for d in small_runs]
    try:
        both = combined_metrics(runs)
        assert set(both["run"]) == {"seed0", "seed1"} and both.groupby("run")["evaluations"].max().eq(120).all()
    finally:
        for r in runs:
            r.close()
