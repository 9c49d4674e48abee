"""Mixtures of mutators with weights, and per-mutator statistics in the run store."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from elm.config import compose
from elm.runner import run
from elm.stats import mutator_stats
from elm.store import RunStore
from elm.types import Parent
from environments.circle_packing import CirclePacking
from mutators import CrossoverMutator, MixtureMutator
from mutators.backends.openai import OpenAIBackend

GP = "mutators.gp.GPMutator"


def groups(n, k=1):
    seeds = CirclePacking().seed_programs()
    return [[Parent(id=10 * i + j, source=seeds[(i + j) % 4], fitness=0.0, descriptor=(0.0, 0.0))
             for j in range(k)] for i in range(n)]


def test_children_are_split_by_weight_and_named_by_component():
    m = MixtureMutator(components={"small": {"_target_": GP, "weight": 3, "max_edits": 1},
                                   "big": {"_target_": GP, "weight": 1, "max_edits": 5}})
    out = m.mutate(parents=groups(400), task=CirclePacking().task(), seed=5)
    counts = Counter(p.mutator for p in out)
    assert set(counts) == {"small", "big"} and 0.68 < counts["small"] / 400 < 0.82
    assert all(len(p.meta["edits"]) == 1 for p in out if p.mutator == "small")
    assert max(len(p.meta["edits"]) for p in out if p.mutator == "big") > 1
    assert [p.parent_ids for p in out] == [(10 * i,) for i in range(400)]  # order kept
    assert all(p.model_seconds > 0 for p in out)  # each component's own time share
    again = m.mutate(parents=groups(400), task=CirclePacking().task(), seed=5)
    assert [p.source for p in again] == [p.source for p in out]
    assert m.checks_syntax and m.parents_per_child == 1


def test_zero_weight_drops_a_component_and_parents_per_child_is_the_largest():
    m = MixtureMutator(components={
        "gp": {"_target_": GP, "weight": 1},
        "off": {"_target_": GP, "weight": 0},
        "cross": {"_target_": "mutators.lm.CrossoverMutator", "weight": 1, "parents": 3,
                  "backend": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
    })
    assert [c.name for c in m.components] == ["gp", "cross"]
    assert m.parents_per_child == 3 and not m.checks_syntax
    assert isinstance(m.components[1], CrossoverMutator) and isinstance(m.components[1].backend, OpenAIBackend)
    m.close()


@pytest.mark.parametrize("components,match", [
    ({}, "non-empty"),
    ({"a": {"weight": 1}}, "_target_"),
    ({"a": {"_target_": GP, "weight": -1}}, "weight"),
    ({"a": {"_target_": GP, "weight": 0}}, "every component has weight 0"),
])
def test_validation(components, match):
    with pytest.raises(ValueError, match=match):
        MixtureMutator(components=components)


def test_run_with_a_mixture_records_per_mutator_statistics(ray_session, tmp_path):
    cfg = compose(["sandbox._target_=tests.elm.inprocess.InProcessSandbox", "loop.progress=false",
                   "ray.evaluator_num_cpus=0", "budget.evaluations=164", "loop.batch_size=16", "seed=3"])
    cfg["mutator"] = {"_target_": "mutators.mixture.MixtureMutator", "name": None, "components": {
        "gp": {"_target_": GP, "weight": 1.0},
        "gp_wild": {"_target_": GP, "weight": 1.0, "max_edits": 6, "constant_sigma": 0.5},
    }}
    summary = run(cfg, run_dir=tmp_path / "r")
    assert summary.evaluations == 164
    with RunStore.open(tmp_path / "r") as store:
        stats = {s.mutator: s for s in mutator_stats(store)}
        stored = json.loads(store.meta()["mutator_stats"])
    assert set(stats) == {"gp", "gp_wild"}
    # 160 children were evaluated; duplicates of earlier programs were recorded but not evaluated
    assert sum(s.proposals - s.duplicates for s in stats.values()) == 160
    for s in stats.values():
        assert s.proposals >= 50 and s.programs == s.parsed  # GP children always parse
        assert 0 < s.valid <= s.parsed and s.inserted >= s.new_cells > 0 and s.model_s > 0
        assert 0 < s.valid_rate <= s.apply_rate <= 1 and s.tokens_out == 0
    assert {d["mutator"] for d in stored} == {"gp", "gp_wild"} and "valid_rate" in stored[0]
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    [(n,)] = conn.execute("SELECT COUNT(*) FROM evaluations WHERE mutator = 'gp_wild' AND archive_status = "
                          "'new_cell'").fetchall()
    conn.close()
    assert n == stats["gp_wild"].new_cells
    text = summary.format()
    assert "per mutator" in text and "gp_wild" in text
