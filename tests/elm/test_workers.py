"""The workers' wire methods: a batch packed by the driver gives what the typed methods give in-process."""

from __future__ import annotations

import pickle
from dataclasses import replace

from elm.config import SandboxConfig
from elm.sandbox import EnvironmentSpec
from elm.types import EvalStatus, MutationStatus, Parent, Proposal, TaskContext
from elm.workers import EvaluatorWorker, MutatorWorker, pack, unpack

TASK = TaskContext(name="toy", description="Return a large number.", entry_point="main", signature="def main():")
SOURCE = "def main():\n    a = 1.5\n    b = 2.0\n    return a + b\n"
PARENTS = [[Parent(id=i, source=SOURCE, fitness=1.0, descriptor=(0.5,), generation=i)] for i in range(6)]


def test_pack_round_trips_and_leaves_other_values_alone():
    value = (PARENTS, None)
    assert unpack(pack(value)) == value
    assert unpack(memoryview(pack(value))) == value  # Ray may hand bytes back as a buffer
    proposals = [Proposal(source="x = 1\n", parent_ids=(0,), mutator="gp")]
    assert unpack(proposals) is proposals  # seeds travel as a plain list


def test_mutate_packed_returns_what_mutate_returns():
    worker = MutatorWorker({"_target_": "mutators.gp.GPMutator"}, TASK, keys=True)
    proposals, keys = worker.mutate(PARENTS, 7)
    packed, packed_keys = worker.mutate_packed(pack((PARENTS, None)), 7)
    assert isinstance(packed, bytes)
    def timeless(ps):  # model_seconds is the time each call took
        return [replace(p, model_seconds=0.0) for p in ps]

    assert timeless(unpack(packed)) == timeless(proposals)
    assert packed_keys == keys and all(k is not None for k, p in zip(keys, proposals) if p.usable)


def test_mutate_packed_checks_the_variant_as_mutate_does():
    worker = MutatorWorker({"_target_": "mutators.gp.GPMutator"}, TASK)
    try:
        worker.mutate_packed(pack((PARENTS, None)), 0, "nope")
    except ValueError as exc:
        assert "unknown variant 'nope'" in str(exc)
    else:
        raise AssertionError("an unknown variant must be refused")


def test_evaluate_packed_takes_packed_children_or_a_list():
    worker = EvaluatorWorker(SandboxConfig(_target_="tests.elm.inprocess.InProcessSandbox"),
                             EnvironmentSpec(target="tests.sandbox.toy_env.ToyEnv", kwargs={}))
    proposals = [Proposal(source=SOURCE, parent_ids=(0,), mutator="gp"),
                 Proposal(source=None, parent_ids=(1,), mutator="gp", status=MutationStatus.MALFORMED),
                 Proposal(source="def main():\n    return 0.25\n", parent_ids=(2,), mutator="gp")]
    label, _, results = unpack(worker.evaluate_packed(pack(proposals), [10, 11, 12], [2]))
    assert label == worker.label
    assert results[0].id == 10 and results[0].status is EvalStatus.OK and results[0].fitness == 3.5
    assert results[1] is None and results[2] is None  # no program; skipped as a duplicate
    _, _, from_list = pickle.loads(worker.evaluate_packed(proposals, [10, 11, 12], [2]))
    assert [r and (r.id, r.fitness) for r in from_list] == [r and (r.id, r.fitness) for r in results]
