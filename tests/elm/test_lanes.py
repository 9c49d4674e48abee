"""Lanes: a slow mutator does not hold back a fast one; shares follow the weights; the bandit adapts them."""

from __future__ import annotations

import sqlite3

from elm.config import compose
from elm.runner import run

GP = "mutators.gp.GPMutator"


def _cfg(components: dict, *overrides: str) -> dict:
    cfg = compose(["sandbox._target_=tests.elm.inprocess.InProcessSandbox", "loop.progress=false",
                   "ray.evaluator_num_cpus=0", "loop.batch_size=8", *overrides])
    cfg["mutator"] = {"_target_": "mutators.mixture.MixtureMutator", "components": components}
    return cfg


def _rows(run_dir):
    conn = sqlite3.connect(run_dir / "run.db")
    rows = conn.execute("SELECT id, mutator, variant, created_at, status FROM evaluations WHERE mutator != 'seed' "
                        "ORDER BY id").fetchall()
    operators = conn.execute("SELECT evaluations, operator, weight FROM operators ORDER BY evaluations").fetchall()
    lanes = conn.execute("SELECT value FROM meta WHERE key = 'lanes'").fetchone()
    conn.close()
    return rows, operators, lanes


def test_a_slow_lane_does_not_hold_back_a_fast_one(ray_session, tmp_path):
    components = {"gp": {"_target_": GP, "weight": 0.5},
                  "slow": {"_target_": "tests.elm.inprocess.SlowGPMutator", "weight": 0.5, "sleep_s": 0.5}}
    summary = run(_cfg(components, "budget.evaluations=400", "seed=1"), run_dir=tmp_path / "r")
    rows, _, lanes = _rows(tmp_path / "r")
    assert summary.evaluations == 400 and lanes[0] == '["gp", "slow"]'
    slow = [r for r in rows if r[1] == "slow"]
    gp = [r for r in rows if r[1] == "gp"]
    assert slow and gp
    # no head-of-line blocking: GP batches keep being absorbed while a slow batch is being written
    # (ids number children as their mutation finishes, so they cannot show submission order)
    slow_times = sorted({r[3] for r in slow})
    between = [sum(a < g[3] < b for g in gp) for a, b in zip(slow_times, slow_times[1:])]
    assert between and max(between) >= 16, between
    # the slow lane gets at most its share (half) plus the one batch it may hold beyond it; on a loaded machine
    # the fast lane may be no faster than that (196 against 200 once at load 35), so no more is asserted
    assert len(slow) <= 400 // 2 + 8, len(slow)


def test_lanes_off_mixes_inside_one_actor(ray_session, tmp_path):
    components = {"gp": {"_target_": GP, "weight": 0.5}, "gp2": {"_target_": GP, "weight": 0.5, "max_edits": 1}}
    run(_cfg(components, "budget.evaluations=80", "search.lanes=false", "seed=3"), run_dir=tmp_path / "r")
    rows, _, lanes = _rows(tmp_path / "r")
    assert lanes[0] == '["mixture"]'
    by_batch = {}
    for r in rows:
        by_batch.setdefault(r[3], set()).add(r[1])
    assert any(len(names) == 2 for names in by_batch.values())  # one batch, both components


def test_shares_follow_the_weights_and_variants_are_operators(ray_session, tmp_path):
    components = {"gp": {"_target_": GP, "weight": 0.75, "variants": {"fine": {"constant_sigma": 0.02},
                                                                      "coarse": {"constant_sigma": 0.3}}},
                  "other": {"_target_": GP, "weight": 0.25, "max_edits": 1}}
    run(_cfg(components, "budget.evaluations=400", "seed=4"), run_dir=tmp_path / "r")
    rows, operators, _ = _rows(tmp_path / "r")
    share = {}
    for r in rows:
        key = f"{r[1]}/{r[2]}" if r[2] else r[1]
        share[key] = share.get(key, 0) + 1
    total = sum(share.values())
    assert set(share) == {"gp/fine", "gp/coarse", "other"}
    assert abs(share["other"] / total - 0.25) < 0.08 and abs(share["gp/fine"] / total - 0.375) < 0.08
    assert {o for _, o, _ in operators} == {"gp/fine", "gp/coarse", "other"}


def test_the_bandit_starves_an_operator_that_never_improves_the_archive(ray_session, tmp_path):
    components = {"gp": {"_target_": GP, "weight": 1.0},
                  "echo": {"_target_": "tests.elm.inprocess.EchoMutator", "weight": 1.0}}
    run(_cfg(components, "budget.evaluations=240", "search.bandit.enabled=true", "search.bandit.warmup=16",
             "search.bandit.floor=0.1", "seed=6"), run_dir=tmp_path / "r")
    rows, operators, _ = _rows(tmp_path / "r")
    last = {o: w for e, o, w in operators if e == operators[-1][0]}
    assert last["echo"] < 0.1 and last["gp"] > 0.9  # echo keeps only about its floor (0.1 / 2 operators)
    first_half = [r for r in rows[: len(rows) // 2] if r[1] == "echo"]
    second_half = [r for r in rows[len(rows) // 2:] if r[1] == "echo"]
    assert len(second_half) < len(first_half)
