"""Tests for elm.archive: cell indexing, elitist batch insertion, stats, CVT, read accessors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from elm import archive as archive_mod
from elm.archive import AddOutcome, ArchiveStats, CVTArchive, GridArchive
from elm.types import AddStatus
from tests.elm.archive_helpers import SPACE_1D, e, space

NEW, IMP, NOT = AddStatus.NEW_CELL, AddStatus.IMPROVED, AddStatus.NOT_ADDED


SPACE_3D = space((0.0, -2.0, 10.0), (1.0, 2.0, 20.0), (2, 4, 5))


def brute_stats(archive, qd_offset):
    fits = [x.fitness for x in archive.elites()]
    n = len(fits)
    qd = sum(f - qd_offset for f in fits)
    return dict(
        num_elites=n,
        coverage=n / archive.cells,
        qd_score=qd,
        norm_qd_score=qd / archive.cells,
        max_fitness=max(fits) if fits else None,
        mean_fitness=(sum(fits) / n) if fits else None,
    )


# -- grid indexing ------------------------------------------------------------------


def test_index_of_edges_1d():
    a = GridArchive(space=SPACE_1D)
    below_upper = np.nextafter(1.0, 0.0)
    xs = [0.0, 1.0, below_upper, 0.5, 0.05, 0.999, 0.1 - 1e-3]
    assert a.index_of(np.array(xs)[:, None]).tolist() == [0, 9, 9, 5, 0, 9, 0]
    # pyribs' epsilon: a value a hair below a bin edge counts as on the edge.
    assert a.index_of(np.array([[0.1 - 1e-12], [0.3 - 1e-12]])).tolist() == [1, 3]
    # index_of always clips: out of bounds on either side goes to the edge bins.
    assert a.index_of(np.array([[-5.0], [-1e-9], [1.0 + 1e-9], [7.0]])).tolist() == [0, 0, 9, 9]


def test_index_of_per_dimension_bins_and_bounds():
    a = GridArchive(space=SPACE_3D)
    assert a.cells == 2 * 4 * 5 and a.bins == (2, 4, 5)
    rng = np.random.default_rng(1)
    lo, hi = np.array(SPACE_3D.lower), np.array(SPACE_3D.upper)
    pts = rng.uniform(lo, hi, size=(500, 3))
    got = a.index_of(pts)
    per_dim = [
        np.clip(np.searchsorted(a.boundaries[j], pts[:, j], side="right") - 1, 0, a.bins[j] - 1)
        for j in range(3)
    ]
    assert got.tolist() == np.ravel_multi_index(per_dim, a.bins).tolist()
    # Corners: C order, last dimension fastest.
    corners = np.array([lo, hi, [0.0, -2.0, 20.0], [1.0, -2.0, 10.0], [0.0, 2.0, 10.0]])
    assert a.index_of(corners).tolist() == [0, 39, 4, 20, 15]
    for cell in range(a.cells):
        assert a.index_of(np.array([a.cell_center(cell)])).tolist() == [cell]
    assert a.grid_index(39) == (1, 3, 4)


def test_bins_override_and_validation():
    a = GridArchive(space=SPACE_3D, bins=[3, 3, 3])
    assert a.cells == 27 and a.to_dict()["bins"] == [3, 3, 3]
    with pytest.raises(ValueError, match="one bin count per dimension"):
        GridArchive(space=SPACE_3D, bins=[3, 3])
    with pytest.raises(ValueError, match="positive integers"):
        GridArchive(space=SPACE_3D, bins=[3, 0, 3])
    with pytest.raises(ValueError, match=r"\['clip', 'reject'\]"):
        GridArchive(space=SPACE_3D, out_of_bounds="wrap")
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        a.index_of(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        a.index_of(np.array([[0.0, np.nan, 10.0]]))


# -- out-of-bounds policies -------------------------------------------------------------


def test_clip_policy_reports_and_places_in_clipped_cell():
    a = GridArchive(space=SPACE_1D)
    out = a.add([e(1.0, -0.2), e(1.0, 1.0), e(2.0, 1.5), e(1.0, 0.55)])
    assert [o.out_of_bounds for o in out] == [True, False, True, False]
    assert [o.cell for o in out] == [0, 9, 9, 5]
    assert [o.status for o in out] == [NEW, NEW, NEW, NEW]
    assert out[2].elite is not None and out[1].elite is None  # 2.0 beats 1.0 in cell 9
    # The stored elite keeps the descriptor it was offered.
    assert a.elite(9).descriptor == (1.5,) and a.elite(9).cell == 9
    assert a.clipped == 2 and a.rejected == 0 and len(a) == 3


def test_reject_policy_counts_and_skips():
    a = GridArchive(space=SPACE_1D, out_of_bounds="reject")
    out = a.add([e(5.0, -0.2), e(1.0, 0.0), e(5.0, 1.0000001), e(1.0, 1.0)])
    assert out[0] == AddOutcome(status=None, cell=None, out_of_bounds=True, elite=None)
    assert out[2] == AddOutcome(status=None, cell=None, out_of_bounds=True, elite=None)
    assert (out[1].status, out[1].cell, out[1].out_of_bounds) == (NEW, 0, False)
    assert (out[3].status, out[3].cell, out[3].out_of_bounds) == (NEW, 9, False)  # upper is inside
    assert a.rejected == 2 and a.clipped == 0 and len(a) == 2
    assert a.stats().max_fitness == 1.0
    out = a.add([e(9.0, 3.0)])
    assert out[0].status is None and a.rejected == 3 and len(a) == 2


def test_non_finite_and_malformed_entries_raise_naming_the_id():
    a = GridArchive(space=SPACE_1D)
    with pytest.raises(ValueError, match="id=77"):
        a.add([e(1.0, 0.5), e(math.nan, 0.5, id=77)])
    with pytest.raises(ValueError, match="id=78"):
        a.add([e(1.0, math.inf, id=78)])
    with pytest.raises(ValueError, match="id=79"):
        a.add([e(1.0, 0.5), e(1.0, 0.5, 0.5, id=79)])
    assert len(a) == 0 and a.stats().num_elites == 0  # nothing half-added
    assert a.add([]) == []


# -- insertion semantics ---------------------------------------------------------------


def test_statuses_new_improved_not_added_and_ties():
    a = GridArchive(space=SPACE_1D)
    assert [o.status for o in a.add([e(1.0, 0.05)])] == [NEW]
    first = a.elite(0)
    out = a.add([e(1.0, 0.06)])  # tie with the elite: not strictly better
    assert out[0].status is NOT and out[0].elite is None and a.elite(0) is first
    out = a.add([e(0.5, 0.07)])
    assert out[0].status is NOT and out[0].cell == 0
    out = a.add([e(1.5, 0.08, id=5000)])
    assert out[0].status is IMP and a.elite(0).id == 5000 and out[0].elite == a.elite(0)


def test_within_batch_duplicates_follow_pyribs():
    a = GridArchive(space=SPACE_1D)
    # Several entries in one empty cell: all NEW_CELL (status is against the
    # archive before the batch), only the best is stored.
    out = a.add([e(1.0, 0.51, id=1), e(3.0, 0.52, id=2), e(2.0, 0.53, id=3)])
    assert [o.status for o in out] == [NEW, NEW, NEW]
    assert [o.elite is not None for o in out] == [False, True, False]
    assert a.elite(5).id == 2 and len(a) == 1
    # Ties inside a batch: the first in batch order wins.
    out = a.add(
        [e(4.0, 0.11, id=10), e(4.0, 0.12, id=11), e(4.0, 0.55, id=12), e(4.0, 0.56, id=13)]
    )
    assert [o.status for o in out] == [NEW, NEW, IMP, IMP]
    assert a.elite(1).id == 10 and a.elite(5).id == 12
    assert [o.elite.id if o.elite else None for o in out] == [10, None, 12, None]
    # Mixed: one improves, one does not.
    out = a.add([e(3.5, 0.57), e(4.5, 0.58, id=14)])
    assert [o.status for o in out] == [NOT, IMP] and a.elite(5).id == 14


def test_elites_ordered_by_cell_and_lookup():
    a = GridArchive(space=SPACE_1D)
    a.add([e(1.0, 0.95), e(1.0, 0.05), e(1.0, 0.45)])
    assert [x.cell for x in a.elites()] == [0, 4, 9]
    assert a.elite(3) is None and a.elite(4).descriptor == (0.45,)
    with pytest.raises(IndexError):
        a.elite(10)
    a.add([e(1.0, 0.35)])  # the cached occupied-cell list must refresh
    assert [x.cell for x in a.elites()] == [0, 3, 4, 9]


@pytest.mark.parametrize("qd_offset", [0.0, -3.0, 1.5])
def test_stats_match_brute_force_over_random_sequences(qd_offset):
    rng = np.random.default_rng(7)
    a = GridArchive(space=SPACE_3D, qd_offset=qd_offset)
    s = a.stats()
    assert (s.num_elites, s.coverage, s.qd_score) == (0, 0.0, 0.0)
    assert s.max_fitness is None and s.mean_fitness is None
    lo, hi = np.array(SPACE_3D.lower), np.array(SPACE_3D.upper)
    for _ in range(40):
        k = int(rng.integers(1, 30))
        pts = rng.uniform(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), size=(k, 3))
        fits = np.round(rng.normal(size=k), 1)  # rounding makes ties common
        a.add([e(float(f), *p) for f, p in zip(fits, pts)])
        s, b = a.stats(), brute_stats(a, qd_offset)
        assert s.num_elites == b["num_elites"] == len(a)
        assert s.cells == a.cells and s.qd_offset == qd_offset
        for key in ("coverage", "qd_score", "norm_qd_score", "max_fitness", "mean_fitness"):
            assert getattr(s, key) == pytest.approx(b[key], rel=1e-12, abs=1e-12), key
    assert a.stats() is a.stats()  # cached, not recomputed
    d = a.stats().to_dict()
    assert set(d) == {f.name for f in ArchiveStats.__dataclass_fields__.values()}
    json.dumps(d)


def test_elitism_against_reference_model():
    """Every cell holds the best entry ever offered to it (first one on ties)."""
    rng = np.random.default_rng(3)
    a = GridArchive(space=SPACE_3D, bins=(3, 3, 3))
    best: dict[int, tuple[float, int]] = {}
    for _ in range(30):
        k = int(rng.integers(1, 40))
        pts = rng.uniform(SPACE_3D.lower, SPACE_3D.upper, size=(k, 3))
        batch = [e(float(f), *p) for f, p in zip(rng.integers(0, 5, size=k), pts)]
        before = dict(best)
        out = a.add(batch)
        for x, o in zip(batch, out):
            prev = before.get(o.cell)
            assert o.status is (NEW if prev is None else IMP if x.fitness > prev[0] else NOT)
            cur = best.get(o.cell)
            if cur is None or x.fitness > cur[0]:
                best[o.cell] = (x.fitness, x.id)
    assert {c: (x.fitness, x.id) for c, x in ((x.cell, x) for x in a.elites())} == best


def test_to_dict_and_cell_center_are_json_friendly():
    a = GridArchive(space=SPACE_3D, qd_offset=-1.0, out_of_bounds="reject")
    d = json.loads(json.dumps(a.to_dict()))
    assert d["kind"] == "grid" and d["cells"] == 40 and d["qd_offset"] == -1.0
    assert d["out_of_bounds"] == "reject" and d["bins"] == [2, 4, 5]
    assert d["lower"] == [0.0, -2.0, 10.0] and d["upper"] == [1.0, 2.0, 20.0]
    assert a.cell_center(0) == (0.25, -1.5, 11.0)
    assert a.cell_center(39) == (0.75, 1.5, 19.0)


# -- CVT -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cvt():
    return CVTArchive(space=SPACE_3D, cells=60, samples=3_000, seed=4)


def brute_nearest(points, centroids):
    d2 = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    return d2.argmin(1), d2


def test_cvt_nearest_centroid_matches_brute_force(cvt, monkeypatch):
    rng = np.random.default_rng(5)
    pts = rng.uniform(SPACE_3D.lower, SPACE_3D.upper, size=(2_000, 3))
    want, d2 = brute_nearest(pts, cvt.centroids)
    got = cvt.index_of(pts)
    assert np.array_equal(d2[np.arange(len(pts)), got], d2.min(1))
    assert (got == want).mean() == 1.0
    # The pure-numpy path (no scipy) agrees, including with tiny chunks.
    monkeypatch.setattr(cvt, "_tree", None)
    assert np.array_equal(cvt.index_of(pts), got)
    assert np.array_equal(archive_mod._nearest_numpy(pts, cvt.centroids, chunk_elems=100), got)
    # Out of bounds points are clipped before the lookup.
    far = np.array([[5.0, -9.0, 30.0]])
    assert cvt.index_of(far).tolist() == cvt.index_of(np.array([[1.0, -2.0, 20.0]])).tolist()


def test_cvt_centroids_reproducible_by_seed(cvt):
    again = CVTArchive(space=SPACE_3D, cells=60, samples=3_000, seed=4)
    other = CVTArchive(space=SPACE_3D, cells=60, samples=3_000, seed=5)
    assert np.array_equal(again.centroids, cvt.centroids)
    assert not np.array_equal(other.centroids, cvt.centroids)
    c = cvt.centroids
    assert c.shape == (60, 3) and not c.flags.writeable
    assert (c >= np.array(SPACE_3D.lower)).all() and (c <= np.array(SPACE_3D.upper)).all()
    assert len(np.unique(cvt.index_of(c))) == 60  # every centroid is its own cell
    assert cvt.cell_center(7) == tuple(c[7])


def test_cvt_numpy_kmeans_fallback_is_seeded(monkeypatch):
    with_scipy = CVTArchive(space=SPACE_3D, cells=30, samples=2_000, seed=1)
    monkeypatch.setattr(archive_mod, "_try_ckdtree", lambda: None)
    a = CVTArchive(space=SPACE_3D, cells=30, samples=2_000, seed=1)
    b = CVTArchive(space=SPACE_3D, cells=30, samples=2_000, seed=1)
    assert a._tree is None and np.array_equal(a.centroids, b.centroids)
    # Same Lloyd iterations, exact distances either way: same centroids.
    assert np.allclose(a.centroids, with_scipy.centroids, rtol=0, atol=1e-12)
    # 1-D k-means on uniform data spreads one centroid per eighth of the range.
    c = np.sort(CVTArchive(space=SPACE_1D, cells=8, samples=500, seed=1).centroids[:, 0])
    assert np.array_equal(np.floor(c * 8), np.arange(8))


def test_cvt_add_semantics_and_stats():
    a = CVTArchive(
        space=SPACE_3D, cells=20, samples=1_000, seed=0, qd_offset=-2.0, out_of_bounds="reject"
    )
    rng = np.random.default_rng(9)
    pts = rng.uniform(SPACE_3D.lower, SPACE_3D.upper, size=(50, 3))
    out = a.add([e(float(f), *p) for f, p in zip(rng.normal(size=50), pts)])
    assert all(o.status is NEW for o in out)  # all against an empty archive
    assert len(a) == len({o.cell for o in out})
    assert [o.cell for o in out] == a.index_of(pts).tolist()
    out = a.add([e(10.0, *pts[0]), e(-10.0, *pts[1]), e(1.0, 2.0, 0.0, 15.0)])
    assert [o.status for o in out] == [IMP, NOT, None] and a.rejected == 1
    s, b = a.stats(), brute_stats(a, -2.0)
    assert s.qd_score == pytest.approx(b["qd_score"]) and s.max_fitness == 10.0
    d = json.loads(json.dumps(a.to_dict()))
    assert d["kind"] == "cvt" and d["seed"] == 0 and len(d["centroids"]) == 20 == d["cells"]


def test_cvt_validation():
    with pytest.raises(ValueError, match="samples must be"):
        CVTArchive(space=SPACE_1D, cells=10, samples=5)
    with pytest.raises(ValueError, match="cells must be"):
        CVTArchive(space=SPACE_1D, cells=0)
    with pytest.raises(ValueError, match="out_of_bounds"):
        CVTArchive(space=SPACE_1D, cells=4, samples=100, out_of_bounds="drop")


# -- read accessors (what parent selectors use) ----------------------------------------


def test_read_accessors_follow_the_archive_and_cannot_change_it():
    a = GridArchive(space=SPACE_1D, bins=[10])
    assert a.occupied_cells().tolist() == [] and not a.occupancy().any()
    a.add([e(1.0, 0.05, id=1), e(3.0, 0.55, id=2), e(2.0, 0.95, id=3)])
    occ = a.occupied_cells()
    assert occ.tolist() == [0, 5, 9] and occ.dtype == np.int64
    assert a.occupancy().tolist() == [c in (0, 5, 9) for c in range(10)]
    assert a.fitness_at(np.array([[0, 5], [9, 1]])).tolist() == [[1.0, 3.0], [2.0, -math.inf]]
    assert [x.id for x in a.elites_at(occ)] == [1, 2, 3]
    with pytest.raises(KeyError):
        a.elites_at([1])
    for view in (occ, a.occupancy()):
        with pytest.raises(ValueError, match="read-only"):
            view[0] = 7
    a.add([e(5.0, 0.15, id=4)])
    assert a.occupied_cells().tolist() == [0, 1, 5, 9] and a.occupancy()[1]
    assert occ.tolist() == [0, 5, 9]  # an earlier result is a snapshot, not a live view


def test_selectors_old_dotted_paths_still_resolve_with_a_warning():
    from elm import selection

    with pytest.warns(DeprecationWarning, match="elm.selection.UniformSelector"):
        assert archive_mod.UniformSelector is selection.UniformSelector
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        archive_mod.Nope  # noqa: B018 (the attribute access is the test)
