"""Operator choice: stride scheduling follows the shares; the bandit moves them toward what pays."""

from __future__ import annotations

import pytest

from elm.config import BanditConfig
from elm.operators import Operator, OperatorChooser


def _chooser(*priors: float, **bandit) -> OperatorChooser:
    ops = [Operator(name=f"op{i}", lane=f"op{i}", variant=None, prior=p) for i, p in enumerate(priors)]
    return OperatorChooser(ops, BanditConfig(**bandit))


def _issue(chooser: OperatorChooser, batches: int, available=None, size: int = 16) -> dict[str, int]:
    counts = {o.name: 0 for o in chooser.operators}
    for _ in range(batches):
        name = chooser.next(available or counts)
        chooser.issued(name, size)
        counts[name] += size
    return counts


def test_batches_follow_the_configured_shares_over_time():
    counts = _issue(_chooser(0.8, 0.2), 200)
    total = sum(counts.values())
    assert counts["op0"] / total == pytest.approx(0.8, abs=0.02)
    assert _chooser(1, 1, 2).shares() == pytest.approx({"op0": 0.25, "op1": 0.25, "op2": 0.5})


def test_a_busy_operator_does_not_hold_back_the_others_nor_take_every_slot_later():
    chooser = _chooser(0.5, 0.5)
    counts = _issue(chooser, 50, available=["op0"])  # op1's actor is busy all that time
    assert counts["op0"] == 50 * 16
    after = _issue(chooser, 10)  # op1 frees up: its credit is capped, so op0 still gets batches
    assert 0 < after["op0"] < after["op1"]


def test_without_the_bandit_the_shares_stay_put():
    chooser = _chooser(0.5, 0.5)
    chooser.feedback("op0", [1.0] * 100, [0.1] * 100)
    chooser.feedback("op1", [0.0] * 100, [0.1] * 100)
    assert chooser.shares() == {"op0": 0.5, "op1": 0.5}
    assert chooser.rate("op0") == pytest.approx(10.0) and chooser.rate("op1") == 0.0


def test_the_bandit_rewards_improvement_per_second_and_keeps_a_floor():
    chooser = _chooser(0.5, 0.5, enabled=True, warmup=10, floor=0.1)
    chooser.feedback("op0", [0.0] * 5, [1.0] * 5)
    assert chooser.shares() == pytest.approx({"op0": 0.5, "op1": 0.5})  # still warming up
    # op0 improves the archive as much as op1 but costs 10x the compute per child
    chooser.feedback("op0", [1.0] * 40, [10.0] * 40)
    chooser.feedback("op1", [1.0] * 40, [1.0] * 40)
    shares = chooser.shares()
    assert shares["op1"] > 0.85 and shares["op0"] >= 0.1 / 2 - 1e-12
    chooser.feedback("op1", [0.0] * 2000, [1.0] * 2000)  # op1 stops paying: forgotten with the half-life
    assert chooser.shares()["op0"] > 0.85
    rows = chooser.rows(evaluations=123)
    assert {r["operator"] for r in rows} == {"op0", "op1"} and all(r["evaluations"] == 123 for r in rows)
    assert sum(r["weight"] for r in rows) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"floor": 1.0}, "floor"), ({"half_life": 0}, "half_life"), ({"temperature": 0}, "temperature"),
])
def test_bad_bandit_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _chooser(1, 1, **kwargs)
