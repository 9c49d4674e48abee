"""Per-mutator statistics: the per-version rows summed per mutator equal the per-mutator query."""

from __future__ import annotations

from elm.stats import merge_versions, mutator_stats
from elm.store import EvaluationRecord, RunStore


def _child(i: int, mutator: str, version: str | None, **kw) -> EvaluationRecord:
    info = {"mutation": {"model_version": version}} if version else {}
    base = dict(id=i, parent_ids=(0,), mutator=mutator, generation=1, source=f"x = {i}", status="ok",
                fitness=float(i), descriptor=(0.5,), cell=i, archive_status="new_cell" if i % 3 else "not_added",
                mutation_status="ok", info=info, tokens_in=i, tokens_out=2 * i, model_s=0.25 * i)
    base.update(kw)
    return EvaluationRecord(**base)


def test_merge_versions_equals_the_per_mutator_statistics(tmp_path):
    store = RunStore.create(tmp_path / "run", meta={})
    store.begin_session()
    seed = EvaluationRecord(id=0, parent_ids=(), mutator="seed", generation=0, source="x = 0", status="ok",
                            fitness=0.0, descriptor=(0.5,), cell=0, archive_status="new_cell")
    children = [_child(i, "lm", "base" if i < 6 else "v1") for i in range(1, 10)]
    children += [_child(10, "lm", "v1", source=None, status="malformed", mutation_status="malformed",
                         fitness=None, descriptor=None, cell=None, archive_status=None),
                 _child(11, "gp", None), _child(12, "gp", None, status="duplicate", duplicate_of=11,
                                                 fitness=None, descriptor=None, cell=None, archive_status=None)]
    store.record([seed, *children])
    per_version = mutator_stats(store, by_version=True)
    assert [(s.mutator, s.model_version) for s in per_version] == [("gp", None), ("lm", "base"), ("lm", "v1")]
    merged = merge_versions(per_version)
    assert merged == mutator_stats(store)
    lm = merged[1]
    assert (lm.mutator, lm.proposals, lm.programs, lm.model_version) == ("lm", 10, 9, None)
    assert lm.statuses == {"ok": 9, "malformed": 1} and lm.tokens_out == 2 * sum(range(1, 11))
    assert merge_versions([]) == []
