"""Contract shared by every mutator registered in conf/mutator/ (each YAML there is one)."""

from __future__ import annotations

import pytest

from elm.config import CONF_DIR, compose
from elm.mutator import Mutator
from elm.sandbox import EnvironmentSpec
from elm.types import Parent
from elm.workers import build_mutator, syntax_error

# Mutators that need model weights are covered by their own tests.
MUTATORS = sorted(p.stem for p in (CONF_DIR / "mutator").glob("*.yaml"))


@pytest.fixture(params=MUTATORS)
def mutator_cfg(request):
    return compose([f"mutator={request.param}"])


def _parents(cfg, k: int) -> list[list[Parent]]:
    env = EnvironmentSpec.from_config(cfg["env"]).build()
    seeds = list(env.seed_programs())
    return [[Parent(id=10 * i + j, source=seeds[(i + j) % len(seeds)], fitness=1.0, descriptor=(0.0, 0.0))
             for j in range(k)] for i in range(6)]


def test_one_proposal_per_parent_group_in_order_and_deterministic(mutator_cfg):
    mutator = build_mutator(mutator_cfg["mutator"])
    assert isinstance(mutator, Mutator)
    env = EnvironmentSpec.from_config(mutator_cfg["env"]).build()
    groups = _parents(mutator_cfg, mutator.parents_per_child)
    a = mutator.mutate(parents=groups, task=env.task(), seed=11)
    b = mutator.mutate(parents=groups, task=env.task(), seed=11)
    assert len(a) == len(groups)
    assert [p.source for p in a] == [p.source for p in b]
    for group, proposal in zip(groups, a):
        assert set(proposal.parent_ids) <= {p.id for p in group} and proposal.parent_ids
        assert proposal.mutator
        assert proposal.tokens_in >= 0 and proposal.tokens_out >= 0
        if proposal.source is None:
            assert proposal.status != "ok"
        elif mutator.checks_syntax:
            assert syntax_error(proposal.source) is None


def test_empty_batch(mutator_cfg):
    mutator = build_mutator(mutator_cfg["mutator"])
    env = EnvironmentSpec.from_config(mutator_cfg["env"]).build()
    assert mutator.mutate(parents=[], task=env.task(), seed=0) == []
