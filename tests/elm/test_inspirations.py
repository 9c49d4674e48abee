"""Inspirations: which other elites the engine shows a language-model operator, and that a run sends them."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from elm.config import compose
from elm.inspirations import choose_inspirations
from elm.runner import run
from elm.types import Elite


def _elites(fitnesses):
    return [Elite(id=i, cell=i, source=f"x = {i}\n", fitness=f, descriptor=(0.0,), parent_ids=(), mutator="seed",
                  generation=0, created_at=0.0) for i, f in enumerate(fitnesses)]


def test_best_half_then_diverse_rest_sorted_lowest_first_without_the_parents():
    pool = _elites([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0])
    chosen = choose_inspirations(pool, exclude=[2], k=4, rng=np.random.default_rng(0))
    ids = [e.id for e in chosen]
    assert 2 not in ids and len(ids) == 4 and len(set(ids)) == 4
    assert {6, 4} <= set(ids)  # the two best once the parent (9.0) is left out
    fits = [e.fitness for e in chosen]
    assert fits == sorted(fits)
    # seeded: the same draw for the same rng state, other draws across seeds
    again = choose_inspirations(pool, exclude=[2], k=4, rng=np.random.default_rng(0))
    assert [e.id for e in again] == ids
    drawn = {tuple(e.id for e in choose_inspirations(pool, exclude=[2], k=4, rng=np.random.default_rng(s)))
             for s in range(20)}
    assert len(drawn) > 1


@pytest.mark.parametrize("k, n, expected", [(0, 5, 0), (3, 2, 1), (3, 4, 3), (5, 6, 5)])
def test_small_archives_give_what_they_have(k, n, expected):
    pool = _elites([float(i) for i in range(n)])
    assert len(choose_inspirations(pool, exclude=[0], k=k, rng=np.random.default_rng(1))) == expected


def test_a_run_sends_inspirations_to_the_operators_that_ask(ray_session, tmp_path):
    cfg = compose(["sandbox._target_=tests.elm.inprocess.InProcessSandbox", "loop.progress=false",
                   "ray.evaluator_num_cpus=0", "loop.batch_size=4", "budget.evaluations=60", "seed=2"])
    cfg["mutator"] = {"_target_": "mutators.mixture.MixtureMutator", "components": {
        "gp": {"_target_": "mutators.gp.GPMutator", "weight": 0.5},
        "inspired": {"_target_": "tests.elm.inprocess.InspirationRecorder", "weight": 0.5, "inspirations": 3}}}
    run(cfg, run_dir=tmp_path / "r")
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    rows = conn.execute("SELECT id, parent_ids, info FROM evaluations WHERE mutator = 'inspired'").fetchall()
    fitness = dict(conn.execute("SELECT id, fitness FROM evaluations WHERE fitness IS NOT NULL").fetchall())
    conn.close()
    assert rows
    shown = [json.loads(info)["mutation"]["inspirations"] for _, _, info in rows]
    assert any(len(s) == 3 for s in shown)  # once the archive holds enough elites
    for (eval_id, parent_ids, _), ids in zip(rows, shown):
        assert not set(ids) & set(json.loads(parent_ids))  # not the parent; lineage stays the parents only
        assert all(i < eval_id and i in fitness for i in ids)  # evaluated elites, known when it was written
        assert [fitness[i] for i in ids] == sorted(fitness[i] for i in ids)
