"""Differential test: elm.archive.GridArchive against pyribs 0.12's GridArchive.

Same seeded batch sequences go to both; statuses, cells, stored entries and
statistics must agree. Batches mix out-of-bounds descriptors (our default
"clip" policy must land them where pyribs' index clipping does), values on and
a hair below bin edges (pyribs' epsilon), and repeated cells and fitnesses
within a batch (pyribs' tie-breaking).
"""

from __future__ import annotations

import numpy as np
import pytest

ribs_archives = pytest.importorskip("ribs.archives")

from elm.archive import GridArchive  # noqa: E402
from elm.types import AddStatus, DescriptorSpace, Elite  # noqa: E402

STATUS = {0: AddStatus.NOT_ADDED, 1: AddStatus.IMPROVED, 2: AddStatus.NEW_CELL}

CASES = [
    # (seed, lower, upper, bins, qd_offset)
    (0, (0.0,), (1.0,), (7,), 0.0),
    (1, (0.0, 0.0), (1.0, 1.0), (5, 5), -1.0),
    (2, (-3.0, 10.0), (2.0, 10.5), (3, 11), 0.5),
    (3, (0.0, -1.0, 5.0), (1.0, 1.0, 9.0), (4, 2, 6), -2.5),
    (4, (0.0, 0.0, 0.0, 0.0), (1.0, 2.0, 3.0, 4.0), (2, 3, 4, 5), 0.0),
    (5, (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), (12, 12, 12), -10.0),
]


def draw_batch(rng, lower, upper, bins, size):
    lower, upper, bins = np.array(lower), np.array(upper), np.array(bins)
    width = upper - lower
    kind = rng.integers(0, 5, size=size)
    x = rng.uniform(lower, upper, size=(size, len(bins)))
    # Out of bounds on either side (moderate: pyribs casts to int32 before clipping).
    oob = kind == 1
    x[oob] = rng.uniform(lower - width, upper + width, size=(int(oob.sum()), len(bins)))
    # Exactly on a bin edge, or a hair below one.
    edge = kind == 2
    k = rng.integers(0, bins + 1, size=(int(edge.sum()), len(bins)))
    on_edge = lower + width * k / bins
    nudge = rng.choice([0.0, -1e-12, -1e-9, 1e-12], size=on_edge.shape) * width
    x[edge] = on_edge + nudge
    # Duplicates of earlier entries in the batch (same cell, often same fitness).
    dup = np.flatnonzero(kind == 3)
    dup = dup[dup > 0]
    x[dup] = x[rng.integers(0, dup)]
    fitness = np.round(rng.normal(size=size), 1)  # coarse values: frequent ties
    return x, fitness


@pytest.mark.parametrize("seed,lower,upper,bins,qd_offset", CASES)
def test_grid_archive_matches_pyribs(seed, lower, upper, bins, qd_offset):
    rng = np.random.default_rng(seed)
    names = tuple(f"d{i}" for i in range(len(bins)))
    space = DescriptorSpace(names=names, lower=lower, upper=upper, bins=bins)
    ours = GridArchive(space=space, qd_offset=qd_offset)
    ref = ribs_archives.GridArchive(
        solution_dim=(),
        solution_dtype=object,
        dims=list(bins),
        ranges=list(zip(lower, upper)),
        qd_score_offset=qd_offset,
        extra_fields={"eid": ((), np.int64)},
    )
    next_id = 0
    for _ in range(25):
        size = int(rng.integers(1, 80))
        x, fitness = draw_batch(rng, lower, upper, bins, size)
        ids = np.arange(next_id, next_id + size)
        next_id += size

        assert ours.index_of(x).tolist() == ref.index_of(x).tolist()

        entries = [
            Elite(id=int(i), cell=-1, source="", fitness=float(f), descriptor=tuple(d))
            for i, f, d in zip(ids, fitness, x.tolist())
        ]
        out = ours.add(entries)
        info = ref.add(
            solution=np.full(size, None, dtype=object), objective=fitness, measures=x, eid=ids
        )
        assert [o.status for o in out] == [STATUS[int(s)] for s in info["status"]]
        assert [o.cell for o in out] == ref.index_of(x).tolist()
        assert [o.out_of_bounds for o in out] == (
            ((x < np.array(lower)) | (x > np.array(upper))).any(axis=1).tolist()
        )

        # Same cells, same stored entry (tie-breaking included), same fitness.
        ref_data = ref.data(["index", "objective", "eid"])
        order = np.argsort(ref_data["index"])
        elites = ours.elites()
        assert [e.cell for e in elites] == ref_data["index"][order].tolist()
        assert [e.fitness for e in elites] == ref_data["objective"][order].tolist()
        assert [e.id for e in elites] == ref_data["eid"][order].tolist()

        s, r = ours.stats(), ref.stats
        assert s.num_elites == r.num_elites == len(ref)
        for mine, theirs in [
            (s.coverage, r.coverage),
            (s.qd_score, r.qd_score),
            (s.norm_qd_score, r.norm_qd_score),
            (s.max_fitness, r.obj_max),
            (s.mean_fitness, r.obj_mean),
        ]:
            assert mine == pytest.approx(float(theirs), rel=1e-9, abs=1e-9)
    assert len(ours) > 0
