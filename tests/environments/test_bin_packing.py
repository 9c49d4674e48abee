"""BinPacking: instances, the fixed skeleton, the verifier (no cheating), baselines, descriptors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from elm import InvalidProgram
from elm.environment import roundtrip_json
from environments import BinPacking
from environments.bin_packing import (
    BEST_FIT_EXCESS,
    PUBLISHED_BEST_FIT_EXCESS,
    SUITES,
    _check_packing,
    _choice_ranks,
    make_instances,
    pack_online,
)

BEST_FIT = "def priority(item, bins):\n    return -(bins - item)\n"
FIRST_FIT = "import numpy as np\ndef priority(item, bins):\n    return -np.arange(len(bins), dtype=float)\n"
# worst fit among the bins already in use (a new bin only when none has room)
WORST_USED_FIT = "import numpy as np\ndef priority(item, bins):\n    return (bins - item) * (bins < bins.max())\n"
# the newest bin in use that has room
LAST_FIT = ("import numpy as np\ndef priority(item, bins):\n"
            "    return np.arange(len(bins), dtype=float) * (bins < bins.max())\n")


@pytest.fixture(scope="module")
def small() -> BinPacking:
    return BinPacking(suites=["or1"])


def run(env: BinPacking, source: str):
    return env.score(roundtrip_json(env.execute(source)))


# ------------------------------------------------------------------ instances


@pytest.mark.parametrize("name", sorted(SUITES))
def test_instances_follow_the_documented_distributions(name):
    suite = SUITES[name]
    instances = make_instances(name)
    assert len(instances) == suite.count and all(len(i) == suite.items for i in instances)
    items = np.concatenate(instances)
    assert np.array_equal(items, np.round(items)) and items.min() >= 1 and items.max() <= suite.capacity
    if suite.kind == "uniform":
        assert items.min() == suite.low and items.max() == suite.high
        assert items.mean() == pytest.approx((suite.low + suite.high) / 2, rel=0.03)
    else:
        assert items.mean() == pytest.approx(suite.scale * math.gamma(1 + 1 / suite.shape), rel=0.02)


def test_instances_are_deterministic_and_depend_on_the_seed():
    a, b, c = make_instances("or2"), make_instances("or2"), make_instances("or2", seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(make_instances("or1")[0][:100], make_instances("or2")[0][:100])


# ------------------------------------------------------------------ baselines vs published


def test_best_fit_baseline_on_these_instances_matches_the_documented_figures():
    env = BinPacking(suites=sorted(SUITES))
    ev = run(env, BEST_FIT)
    measured = {k: round(v, 2) for k, v in ev.info["excess_percent"].items()}
    assert measured == BEST_FIT_EXCESS
    # same distributions as the published sets: within a percentage point of their best fit
    for suite, published in PUBLISHED_BEST_FIT_EXCESS.items():
        assert abs(measured[suite] - published) < 1.0
    assert ev.fitness == pytest.approx(-np.mean(list(ev.info["excess_percent"].values())))


def test_default_suites_are_the_published_ones():
    env = BinPacking()
    assert env.suites == ("or3", "weibull5k")
    assert env.evaluate_local(env.seed_programs()[0]).fitness == pytest.approx(
        -(BEST_FIT_EXCESS["or3"] + BEST_FIT_EXCESS["weibull5k"]) / 2, abs=0.01)


def test_first_fit_is_worse_than_best_fit(small):
    assert run(small, FIRST_FIT).fitness < run(small, BEST_FIT).fitness < 0


# ------------------------------------------------------------------ skeleton


def test_skeleton_passes_remaining_capacities_of_the_bins_that_fit():
    calls = []

    def priority(item, bins):
        calls.append((item, bins.tolist()))
        return -(bins - item)

    assignment = pack_online(priority, np.array([60.0, 50.0, 70.0, 40.0]), 100.0)
    assert assignment.tolist() == [0, 1, 2, 0]
    assert calls == [
        (60.0, [100.0, 100.0, 100.0, 100.0]),  # one bin per item, all empty: ties go to the first
        (50.0, [100.0, 100.0, 100.0]),  # bin 0 (room 40) cannot take 50
        (70.0, [100.0, 100.0]),
        (40.0, [40.0, 50.0, 100.0]),  # bins 0, 1 and the empty bin 3; best fit picks bin 0 exactly
    ]


def test_skeleton_rejects_priorities_of_the_wrong_shape():
    with pytest.raises(InvalidProgram, match="one score per bin"):
        pack_online(lambda item, bins: 1.0, np.array([10.0, 20.0]), 100.0)
    with pytest.raises(InvalidProgram, match=r"shape \(2,\)"):
        pack_online(lambda item, bins: np.zeros(2), np.array([10.0, 20.0, 30.0]), 100.0)


def test_priority_errors_are_program_errors(small):
    with pytest.raises(ZeroDivisionError):
        small.execute("def priority(item, bins):\n    return 1 / 0\n")
    with pytest.raises(InvalidProgram, match="does not define a function named 'priority'"):
        small.execute("def prio(item, bins):\n    return bins\n")


# ------------------------------------------------------------------ verifier


def test_the_candidate_cannot_fake_its_result(small, monkeypatch):
    """A program that patches the packer in its own process gets a verified (here: invalid) packing."""
    import environments.bin_packing as bp

    monkeypatch.setattr(bp, "pack_online", bp.pack_online)  # restored after the test: execute runs here
    cheat = '''
import numpy as np
import environments.bin_packing as bp

bp.pack_online = lambda priority, items, capacity: np.zeros(len(items), dtype=int)  # "one bin for all"

def priority(item, bins):
    return -(bins - item)
'''
    output = roundtrip_json(small.execute(cheat))
    assert set(output["or1"][0]) == {0}
    with pytest.raises(InvalidProgram, match="bin 0 holds .* > capacity 150"):
        small.score(output)


def test_a_claimed_packing_must_cover_the_real_instances(small):
    good = roundtrip_json(small.execute(BEST_FIT))
    short = {"or1": [p[:-1] for p in good["or1"]]}
    with pytest.raises(InvalidProgram, match="each of the 120 items"):
        small.score(short)
    with pytest.raises(InvalidProgram, match="expected 20 packings"):
        small.score({"or1": good["or1"][:19]})
    with pytest.raises(InvalidProgram, match="must map each suite"):
        small.score({"or2": good["or1"]})
    with pytest.raises(InvalidProgram, match="must map each suite"):
        small.score([1, 2])


@pytest.mark.parametrize("value,reason", [
    (-1, r"must lie in \[0, 119\]"),
    (120, r"must lie in \[0, 119\]"),
    (1.0, "must be ints"),
    (True, "must be ints"),
    ("3", "must be ints"),
])
def test_bad_bin_indices_are_invalid(small, value, reason):
    output = roundtrip_json(small.execute(BEST_FIT))
    output["or1"][4][7] = value
    with pytest.raises(InvalidProgram, match=reason):
        small.score(output)


def test_bins_are_counted_from_the_assignment_whatever_their_labels(small):
    output = roundtrip_json(small.execute(BEST_FIT))
    relabelled = {"or1": [[119 - b for b in p] for p in output["or1"]]}
    assert small.score(relabelled) == small.score(output)


def test_check_packing_relabels_bins_in_order_of_first_use():
    items = np.array([50.0, 60.0, 40.0, 30.0])
    labels = _check_packing([3, 1, 1, 3], items, 100.0, "x")
    assert labels.tolist() == [0, 1, 1, 0]
    with pytest.raises(InvalidProgram, match="bin 1 holds 130 > capacity 100"):
        _check_packing([3, 1, 1, 1], items, 100.0, "x")


# ------------------------------------------------------------------ descriptors


def test_choice_ranks_on_a_hand_example():
    # capacity 10; items 6, 7, 3, 2 -> bins 0, 1, then the 3 can go to bin 0 (room 4) or bin 1 (room 3)
    items = np.array([6.0, 7.0, 3.0, 2.0])
    loose, recent = _choice_ranks(np.array([0, 1, 0, 2]), items, 10.0)
    # item 3 (size 3): choices bin 0 (room 4), bin 1 (room 3), new -> chose bin 0: 2nd tightest, oldest
    # item 4 (size 2): choices bin 0 (room 1)? no; bin 1 (room 3), new -> chose new: loosest, newest
    assert loose.tolist() == [0.5, 1.0] and recent.tolist() == [0.0, 1.0]


def test_descriptors_separate_classic_heuristics(small):
    space = small.descriptor_space
    found = {}
    for name, source in (("best", BEST_FIT), ("first", FIRST_FIT), ("worst", WORST_USED_FIT), ("last", LAST_FIT)):
        found[name] = run(small, source)
    assert found["best"].descriptor[0] == 0.0  # always the tightest choice
    assert found["first"].descriptor[1] == 0.0  # always the oldest choice
    assert found["worst"].descriptor[0] > 0.5 and found["last"].descriptor[1] > 0.5
    cells = {name: tuple(min(b - 1, int((v - lo) / (hi - lo) * b))
                         for v, lo, hi, b in zip(ev.descriptor, space.lower, space.upper, space.bins))
             for name, ev in found.items()}
    assert len(set(cells.values())) == 4, cells


def test_seeds_are_valid_and_in_distinct_cells():
    env = BinPacking()
    space = env.descriptor_space
    cells = set()
    for source in env.seed_programs():
        ev = env.evaluate_local(source)
        assert -10 < ev.fitness < 0
        cells.add(tuple(min(b - 1, int((v - lo) / (hi - lo) * b))
                        for v, lo, hi, b in zip(ev.descriptor, space.lower, space.upper, space.bins)))
    assert len(cells) == 3


def test_worst_possible_packing_stays_above_the_documented_qd_offset(small):
    one_per_bin = "import numpy as np\ndef priority(item, bins):\n    return (bins == bins.max()).astype(float)\n"
    ev = run(BinPacking(suites=sorted(SUITES)), one_per_bin)
    assert -200 < ev.fitness < -140


@pytest.mark.parametrize("kwargs,error", [
    ({"suites": ["or9"]}, "distinct names"),
    ({"suites": []}, "at least one"),
    ({"suites": ["or1", "or1"]}, "distinct"),
    ({"suites": "or1"}, "list of suite names"),
    ({"seed": -1}, "non-negative"),
])
def test_bad_constructor_arguments(kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        BinPacking(**kwargs)
