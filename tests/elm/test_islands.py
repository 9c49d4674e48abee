"""The island model: separate archives, ring migration, resets of the weakest, and a resumable record."""

from __future__ import annotations

import json
import sqlite3

import pytest

from elm.archive import GridArchive
from elm.config import IslandsConfig, compose
from elm.islands import IslandModel
from elm.runner import run
from elm.selection import UniformSelector
from elm.types import DescriptorSpace, Elite

SPACE = DescriptorSpace(names=("x",), lower=(0.0,), upper=(1.0,), bins=(10,))


def _model(**cfg) -> IslandModel:
    return IslandModel(IslandsConfig(**{"count": 3, **cfg}), make_archive=lambda: GridArchive(space=SPACE),
                       make_selector=UniformSelector, seed=0)


def _elite(i: int, x: float, fitness: float) -> Elite:
    return Elite(id=i, cell=-1, source=f"x = {i}", fitness=fitness, descriptor=(x,))


def test_islands_keep_apart_until_migration_copies_the_best_along_the_ring():
    model = _model(migrants=1, migration_interval=100)
    model.add(0, [_elite(1, 0.05, 1.0), _elite(2, 0.55, 3.0)])
    model.add(1, [_elite(3, 0.95, 2.0)])
    assert [len(a) for a in model.archives] == [2, 1, 0]
    assert model.step(50) == []  # not yet
    events = model.step(100)
    assert [(e["source"], e["target"], e["elite_ids"]) for e in events] == [(0, 1, [2]), (1, 2, [3])]
    assert {e.id for e in model.archives[1].elites()} == {2, 3} and [e.id for e in model.archives[2].elites()] == [3]
    assert model.step(150) == [] and len(model.step(200)) == 3  # island 2 now has an elite to send


def test_children_go_to_the_island_with_the_fewest():
    model = _model()
    picks = []
    for _ in range(6):
        island = model.pick()
        model.issued(island, 16)
        picks.append(island)
    assert picks == [0, 1, 2, 0, 1, 2]


def test_reset_restarts_the_weakest_from_a_survivors_champion():
    model = _model(reset_interval=10, reset_fraction=0.34, migration_interval=0)
    model.add(0, [_elite(1, 0.1, 5.0), _elite(2, 0.5, 1.0)])
    model.add(1, [_elite(3, 0.1, 2.0)])
    model.add(2, [_elite(4, 0.1, 0.5), _elite(5, 0.7, 0.4)])
    (event,) = model.step(10)
    assert event["kind"] == "reset" and event["target"] == 2
    assert [e.id for e in model.archives[2].elites()] == [{0: 1, 1: 3}[event["source"]]]
    replayed = _model(reset_interval=10, reset_fraction=0.34, migration_interval=0)
    replayed.add(2, [_elite(4, 0.1, 0.5)])
    replayed.replay_event(event, {1: _elite(1, 0.1, 5.0), 3: _elite(3, 0.1, 2.0)})
    assert [e.id for e in replayed.archives[2].elites()] == [e.id for e in model.archives[2].elites()]


@pytest.mark.parametrize("cfg, match", [({"count": 1}, "count >= 2"), ({"reset_fraction": 1.0}, "reset_fraction")])
def test_bad_island_settings_are_refused(cfg, match):
    with pytest.raises(ValueError, match=match):
        _model(**cfg)


def _cfg(*overrides):
    return compose(["sandbox._target_=tests.elm.inprocess.InProcessSandbox", "mutator=gp", "loop.progress=false",
                    "ray.evaluator_num_cpus=0", "loop.batch_size=8", "search.islands.count=3",
                    "search.islands.migration_interval=40", "search.islands.reset_interval=100", *overrides])


def test_a_run_with_islands_records_them_and_resumes_them(ray_session, tmp_path):
    run(_cfg("budget.evaluations=150", "seed=5"), run_dir=tmp_path / "r")
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    islands = conn.execute("SELECT island, COUNT(*) FROM evaluations WHERE mutator = 'gp' GROUP BY island").fetchall()
    events = conn.execute("SELECT kind, COUNT(*) FROM island_events GROUP BY kind").fetchall()
    stats = conn.execute("SELECT island, num_elites, max_fitness FROM islands WHERE evaluations = "
                         "(SELECT MAX(evaluations) FROM islands) ORDER BY island").fetchall()
    conn.close()
    assert [i for i, _ in islands] == [0, 1, 2] and all(n >= 40 for _, n in islands)
    assert dict(events)["migrate"] >= 3 * 3 and dict(events)["reset"] == 1
    assert len(stats) == 3 and all(n > 0 for _, n, _ in stats)
    # resume: each island is rebuilt from the rows and the recorded events, then the run goes on
    cfg = _cfg("budget.evaluations=200")
    cfg["resume"] = str(tmp_path / "r")
    summary = run(cfg, run_dir=tmp_path / "r")
    assert summary.evaluations == 200
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    after = conn.execute("SELECT island, num_elites FROM islands WHERE evaluations = "
                         "(SELECT MIN(evaluations) FROM islands WHERE evaluations > 150) ORDER BY island").fetchall()
    conn.close()
    assert len(after) == 3 and all(n >= 1 for _, n in after)
    assert json.loads(json.dumps(after))  # plain rows
