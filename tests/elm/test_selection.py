"""Tests for elm.selection: uniform, tournament, frontier and curiosity parent selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from elm.archive import AddOutcome, CVTArchive, GridArchive
from elm.selection import (
    CuriositySelector,
    FrontierSelector,
    TournamentSelector,
    UniformSelector,
    make_selector,
)
from elm.types import AddStatus, DescriptorSpace, Elite
from tests.elm.archive_helpers import SPACE_1D, e

NEW, IMP, NOT = AddStatus.NEW_CELL, AddStatus.IMPROVED, AddStatus.NOT_ADDED

def filled_grid(n_cells=10):
    a = GridArchive(space=SPACE_1D, bins=[n_cells])
    a.add([e(1.0, (i + 0.5) / n_cells, id=100 + i) for i in range(n_cells)])
    return a


def test_uniform_selector_covers_all_and_is_deterministic():
    a = filled_grid()
    sel = make_selector("uniform")
    assert isinstance(sel, UniformSelector)
    picks = sel.select(a, 2_000, np.random.default_rng(0))
    counts = np.bincount([p.cell for p in picks], minlength=10)
    assert (counts > 120).all() and counts.sum() == 2_000
    again = sel.select(a, 2_000, np.random.default_rng(0))
    assert [p.id for p in picks] == [p.id for p in again]
    assert sel.select(a, 0, np.random.default_rng(0)) == []


@pytest.mark.parametrize("name", ["uniform", "curiosity"])
def test_selectors_refuse_empty_archive(name):
    sel = make_selector(name)
    with pytest.raises(ValueError, match="empty archive"):
        sel.select(GridArchive(space=SPACE_1D), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be"):
        sel.select(filled_grid(), -1, np.random.default_rng(0))


def test_make_selector_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"\['curiosity', 'frontier', 'tournament', 'uniform'\]"):
        make_selector("roulette")
    sel = make_selector("curiosity", reward=2.0, penalty=0.25)
    assert isinstance(sel, CuriositySelector) and sel.reward == 2.0 and sel.penalty == 0.25
    with pytest.raises(ValueError, match="min_score"):
        CuriositySelector(min_score=0.0)


def test_curiosity_favours_productive_parents():
    a = filled_grid()
    sel = CuriositySelector()
    rng = np.random.default_rng(42)
    productive = 3
    first = sel.select(a, 64, rng)
    for _ in range(30):
        parents = sel.select(a, 64, rng)
        outcomes = [
            AddOutcome(IMP if p.cell == productive else NOT, p.cell, False, None) for p in parents
        ]
        sel.update([(p.id,) for p in parents], outcomes)
    last = sel.select(a, 1_000, rng)
    share = np.mean([p.cell == productive for p in last])
    assert np.mean([p.cell == productive for p in first]) < 0.3
    assert share > 0.8  # uniform would give 0.1
    assert sel.score(productive) > 20.0
    assert all(sel.score(c) == pytest.approx(0.1) for c in range(10) if c != productive)


def test_curiosity_update_rules_and_state_roundtrip():
    a = filled_grid(4)
    sel = CuriositySelector(init_score=1.0, reward=1.0, penalty=0.5, min_score=0.1)
    parents = sel.select(a, 50, np.random.default_rng(1))
    assert {p.cell for p in parents} == {0, 1, 2, 3}
    pid = {c: 100 + c for c in range(4)}
    sel.update(
        [(pid[0],), (pid[0], pid[1]), (pid[1], pid[1]), (pid[2],), (999,)],
        [
            AddOutcome(NEW, 0, False, None),
            AddOutcome(NOT, 0, False, None),
            AddOutcome(None, None, True, None),  # rejected counts as a failure
            AddOutcome(IMP, 2, False, None),
            AddOutcome(NEW, 0, False, None),  # unknown parent id: ignored
        ],
    )
    # cell 0: 1 + 1 - 0.5; cell 1: 1 - 0.5 - 0.5 (duplicate id counted once per child); cell 2: 2
    assert sel.score(0) == 1.5 and sel.score(1) == pytest.approx(0.1) and sel.score(2) == 2.0
    assert sel.score(3) == 1.0
    with pytest.raises(ValueError, match="one parent-id tuple per outcome"):
        sel.update([(pid[0],)], [])

    state = json.loads(json.dumps(sel.state_dict()))
    clone = make_selector("curiosity")
    clone.load_state_dict(state)
    assert [clone.score(c) for c in range(4)] == [sel.score(c) for c in range(4)]
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [p.id for p in clone.select(a, 30, r1)] == [p.id for p in sel.select(a, 30, r2)]
    with pytest.raises(ValueError, match="not 'curiosity'"):
        clone.load_state_dict({"name": "uniform"})


def test_curiosity_score_survives_elite_replacement_and_tracking_is_bounded():
    a = filled_grid(4)
    sel = CuriositySelector(max_tracked=3)
    parents = sel.select(a, 20, np.random.default_rng(0))
    assert len(sel._parent_cell) <= 3
    p = parents[-1]
    a.add([e(5.0, (p.cell + 0.5) / 4, id=555)])  # replace the parent's elite
    sel.update([(p.id,)], [AddOutcome(NEW, 1, False, None)])
    assert sel.score(p.cell) == 2.0  # credit still goes to the cell


def test_curiosity_remember_lets_replayed_feedback_land():
    space = DescriptorSpace(names=("a",), lower=(0.0,), upper=(1.0,), bins=(4,))
    archive = GridArchive(space=space)
    outs = archive.add([Elite(id=7, cell=-1, source="", fitness=1.0, descriptor=(0.1,))])
    sel = CuriositySelector()
    inserted = AddOutcome(status=AddStatus.NEW_CELL, cell=1, out_of_bounds=False, elite=None)
    sel.update([(7,)], [inserted])  # never selected in this process: ignored
    assert sel.score(outs[0].cell) == sel.init_score
    sel.remember([outs[0].elite])
    sel.update([(7,)], [inserted])
    assert sel.score(outs[0].cell) == sel.init_score + sel.reward


def test_tournament_selection_prefers_fit_elites_and_still_reaches_every_cell():
    space = DescriptorSpace(names=("x",), lower=(0.0,), upper=(1.0,), bins=(10,))
    archive = GridArchive(space=space)
    archive.add([Elite(id=i, cell=-1, source="", fitness=float(i), descriptor=(i / 10 + 0.05,)) for i in range(10)])
    rng = np.random.default_rng(0)
    picks = [e.id for e in TournamentSelector(size=3).select(archive, 5000, rng)]
    counts = np.bincount(picks, minlength=10) / len(picks)
    assert counts[9] > 0.25 and counts[0] > 0  # P(best) = 1 - 0.9**3; the worst only by 3 self-draws
    assert np.all(np.diff(counts) > 0)  # fitter cells are chosen more often
    uniform = np.bincount([e.id for e in make_selector("tournament", size=1).select(archive, 5000, rng)]) / 5000
    assert np.all(np.abs(uniform - 0.1) < 0.03)
    with pytest.raises(ValueError, match="tournament size"):
        TournamentSelector(size=0)


def test_frontier_selection_weights_cells_by_their_empty_neighbours():
    space = DescriptorSpace(names=("x", "y"), lower=(0.0, 0.0), upper=(1.0, 1.0), bins=(4, 4))
    archive = GridArchive(space=space)
    # a 2 x 2 block in the corner (cells (0,0) (0,1) (1,0) (1,1)) and the opposite corner (3,3)
    points = [(0.1, 0.1), (0.1, 0.3), (0.3, 0.1), (0.3, 0.3), (0.9, 0.9)]
    archive.add([Elite(id=i, cell=-1, source="", fitness=1.0, descriptor=p) for i, p in enumerate(points)])
    cells = archive.index_of(np.array(points))
    selector = FrontierSelector(weight=2.0)
    # empty neighbours (the map's edge is none): 0, 1, 1, 2 in the block, 2 in the far corner
    assert selector.weights(archive, cells).tolist() == [1.0, 3.0, 3.0, 5.0, 5.0]
    picks = np.bincount([e.id for e in selector.select(archive, 17_000, np.random.default_rng(0))], minlength=5)
    assert np.allclose(picks / picks.sum(), np.array([1, 3, 3, 5, 5]) / 17, atol=0.01)
    assert FrontierSelector(weight=0).weights(archive, cells).tolist() == [1.0] * 5  # uniform
    assert make_selector("frontier", weight=1.0).state_dict() == {"name": "frontier", "weight": 1.0}
    for bad in (-1.0, float("nan"), True, "3"):
        with pytest.raises(ValueError, match="frontier weight"):
            FrontierSelector(weight=bad)
    cvt = CVTArchive(space=space, cells=8, samples=2000, seed=0)
    cvt.add([Elite(id=0, cell=-1, source="", fitness=1.0, descriptor=(0.5, 0.5))])
    with pytest.raises(ValueError, match="needs a grid archive"):
        selector.select(cvt, 4, np.random.default_rng(0))
