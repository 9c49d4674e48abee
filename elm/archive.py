"""MAP-Elites archives: grid and CVT (the parent selectors that sample them are in :mod:`elm.selection`).

The archives follow pyribs 0.12 (``ribs.archives.GridArchive`` with its default
``learning_rate``/``threshold_min``): the same cell indexing, the same elitist
batch insertion rule and the same statistics, so that results can be compared
with pyribs directly (``tests/elm/test_archive_pyribs.py`` checks this).

What differs from pyribs is the payload: a cell holds an :class:`~elm.types.Elite`
(a program and its metadata) rather than a numeric solution vector, and
descriptors outside the bounds are never handled silently: every
:class:`AddOutcome` says whether its descriptor was out of bounds, and the
``"reject"`` policy refuses such entries instead of clipping them.

Cells are flat integer indices in ``[0, archive.cells)``. For a grid they are the
C-order ravel of the per-dimension bin indices; for a CVT archive they index the
centroid array.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from elm.types import AddStatus, DescriptorSpace, Elite

__all__ = [
    "AddOutcome",
    "Archive",
    "ArchiveStats",
    "CVTArchive",
    "GridArchive",
]

OUT_OF_BOUNDS_POLICIES = ("clip", "reject")

# pyribs' integer statuses 0/1/2, indexable by the int code.
_STATUS_BY_CODE = (AddStatus.NOT_ADDED, AddStatus.IMPROVED, AddStatus.NEW_CELL)


@dataclass(frozen=True)
class ArchiveStats:
    """Summary of an archive's contents, kept up to date by every :meth:`Archive.add`.

    ``coverage`` is ``num_elites / cells``. ``qd_score`` follows pyribs: the sum
    over elites of ``fitness - qd_offset`` (so a ``qd_offset`` below the worst
    fitness keeps every term positive); ``norm_qd_score`` is ``qd_score / cells``.
    ``max_fitness`` and ``mean_fitness`` are None while the archive is empty.
    """

    num_elites: int
    cells: int
    coverage: float
    qd_score: float
    norm_qd_score: float
    max_fitness: float | None
    mean_fitness: float | None
    qd_offset: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AddOutcome:
    """What happened to one entry of an :meth:`Archive.add` batch.

    ``status`` is computed against the archive as it was *before* the batch, as
    in pyribs: two entries that both land in the same empty cell are both
    ``NEW_CELL``, although only the better one is stored. ``elite`` is the Elite
    as stored (with ``cell`` filled in) for the entry that was actually stored,
    and None for every other entry -- so ``status`` may be ``NEW_CELL`` or
    ``IMPROVED`` with ``elite`` None when a better entry of the same batch won the
    cell.

    Under the ``"reject"`` policy an out-of-bounds entry gets ``status=None``,
    ``cell=None`` and ``out_of_bounds=True``. Under ``"clip"`` it is placed in the
    cell of its clipped descriptor and ``out_of_bounds`` is True.
    """

    status: AddStatus | None
    cell: int | None
    out_of_bounds: bool
    elite: Elite | None
    #: what the entry adds to the QD score against the archive before the batch (pyribs' "value"):
    #: ``fitness - qd_offset`` for NEW_CELL, ``fitness - previous fitness`` for IMPROVED, else 0
    improvement: float = 0.0

    @property
    def inserted(self) -> bool:
        """True when this entry is now the elite of its cell."""
        return self.elite is not None


def _check_policy(out_of_bounds: str) -> str:
    if out_of_bounds not in OUT_OF_BOUNDS_POLICIES:
        raise ValueError(
            f"out_of_bounds must be one of {list(OUT_OF_BOUNDS_POLICIES)}, got {out_of_bounds!r}"
        )
    return out_of_bounds


class Archive(ABC):
    """Elitist MAP-Elites archive over a :class:`~elm.types.DescriptorSpace`.

    Storage is shared by all geometries: a dict ``cell -> Elite`` plus dense
    numpy arrays of per-cell fitness and occupancy (so batch status computation
    is vectorised). Subclasses only map clipped descriptors to cells and
    describe their geometry.

    ``qd_offset`` is subtracted from every fitness in the QD score (pyribs'
    ``qd_score_offset``). ``out_of_bounds`` is ``"clip"`` (place the entry in the
    cell of its clipped descriptor) or ``"reject"`` (do not add it; counted in
    :attr:`rejected`). Either way the outcome says the descriptor was outside.
    Stored elites keep the descriptor they were offered, unclipped.
    """

    kind: ClassVar[str] = "archive"

    def __init__(
        self,
        *,
        space: DescriptorSpace,
        cells: int,
        qd_offset: float = 0.0,
        out_of_bounds: str = "clip",
    ) -> None:
        if not isinstance(space, DescriptorSpace):
            raise TypeError(f"space must be a DescriptorSpace, got {type(space).__name__}")
        qd_offset = float(qd_offset)
        if not math.isfinite(qd_offset):
            raise ValueError(f"qd_offset must be finite, got {qd_offset}")
        self.space = space
        self._cells = int(cells)
        self._qd_offset = qd_offset
        self._policy = _check_policy(out_of_bounds)
        self._lower = np.asarray(space.lower, dtype=np.float64)
        self._upper = np.asarray(space.upper, dtype=np.float64)

        # -inf marks an empty cell in the fitness array, so "fitness > current"
        # is the whole insertion test (every finite fitness beats an empty cell).
        self._fitness = np.full(self._cells, -np.inf, dtype=np.float64)
        self._occupied = np.zeros(self._cells, dtype=bool)
        self._elites: dict[int, Elite] = {}
        self._occupied_sorted: np.ndarray | None = np.empty(0, dtype=np.int64)

        self._objective_sum = 0.0
        self._max_fitness: float | None = None
        self._rejected = 0
        self._clipped = 0
        self._stats = self._make_stats()

    # -- geometry (subclasses) -------------------------------------------------

    @abstractmethod
    def _index_clipped(self, descriptors: np.ndarray) -> np.ndarray:
        """Cells of ``(n, d)`` float64 descriptors already clipped into bounds."""

    @abstractmethod
    def cell_center(self, cell: int) -> tuple[float, ...]:
        """Representative point of ``cell`` in descriptor units (for dashboards)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description of the geometry, enough for a dashboard to redraw it."""

    # -- properties ------------------------------------------------------------

    @property
    def cells(self) -> int:
        """Total number of cells."""
        return self._cells

    @property
    def qd_offset(self) -> float:
        return self._qd_offset

    @property
    def out_of_bounds(self) -> str:
        """The out-of-bounds policy, ``"clip"`` or ``"reject"``."""
        return self._policy

    @property
    def rejected(self) -> int:
        """Entries refused because their descriptor was outside bounds (policy ``"reject"``)."""
        return self._rejected

    @property
    def clipped(self) -> int:
        """Entries whose out-of-bounds descriptor was clipped (policy ``"clip"``)."""
        return self._clipped

    def __len__(self) -> int:
        return len(self._elites)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cells={self._cells}, elites={len(self._elites)}, "
            f"out_of_bounds={self._policy!r})"
        )

    # -- lookup ------------------------------------------------------------------

    def index_of(self, descriptors: np.ndarray) -> np.ndarray:
        """Cell indices of ``(n, d)`` descriptors, as int64 array of shape ``(n,)``.

        Descriptors outside the bounds are clipped into them first (the ``"clip"``
        policy), whatever this archive's policy is; check bounds separately to
        know whether :meth:`add` would reject them.
        """
        desc = np.asarray(descriptors, dtype=np.float64)
        d = self.space.dims
        if desc.ndim != 2 or desc.shape[1] != d:
            raise ValueError(
                f"descriptors must have shape (n, {d}) for dimensions {list(self.space.names)}, "
                f"got {desc.shape}; wrap a single descriptor as [descriptor]"
            )
        if not np.isfinite(desc).all():
            rows = np.flatnonzero(~np.isfinite(desc).all(axis=1))
            raise ValueError(f"descriptors must be finite; rows {rows[:10].tolist()} are not")
        return self._index_clipped(np.clip(desc, self._lower, self._upper))

    def elite(self, cell: int) -> Elite | None:
        """The elite in ``cell``, or None when the cell is empty."""
        if not 0 <= cell < self._cells:
            raise IndexError(f"cell {cell} out of range [0, {self._cells})")
        return self._elites.get(int(cell))

    def elites(self) -> list[Elite]:
        """All elites, ordered by cell index."""
        return [self._elites[c] for c in self.occupied_cells().tolist()]

    def occupied_cells(self) -> np.ndarray:
        """Sorted int64 array of the occupied cells, shape ``(len(self),)``; read-only (cached
        until the next insertion, so copy it to keep it across an :meth:`add`)."""
        if self._occupied_sorted is None:
            occ = np.flatnonzero(self._occupied)
            occ.flags.writeable = False
            self._occupied_sorted = occ
        return self._occupied_sorted

    def occupancy(self) -> np.ndarray:
        """Boolean mask of the occupied cells, shape ``(cells,)``; a read-only view of the live
        mask (it changes with the next :meth:`add`)."""
        view = self._occupied.view()
        view.flags.writeable = False
        return view

    def fitness_at(self, cells: np.ndarray) -> np.ndarray:
        """Fitness of the elites in ``cells`` (flat cell indices, any shape), same shape as
        ``cells``; ``-inf`` for an empty cell."""
        return self._fitness[np.asarray(cells, dtype=np.int64)]

    def elites_at(self, cells: Sequence[int] | np.ndarray) -> list[Elite]:
        """The elites in ``cells`` (occupied flat cell indices), in order; KeyError for an
        empty cell. The batch form of :meth:`elite`, without its range check."""
        elites = self._elites
        return [elites[c] for c in np.asarray(cells, dtype=np.int64).tolist()]

    def stats(self) -> ArchiveStats:
        """Current statistics; O(1), maintained incrementally by :meth:`add`."""
        return self._stats

    def _make_stats(self) -> ArchiveStats:
        n = len(self._elites)
        # Same formulas (and operation order) as pyribs' GridArchive._stats_update.
        qd_score = self._objective_sum - n * self._qd_offset
        return ArchiveStats(
            num_elites=n,
            cells=self._cells,
            coverage=n / self._cells,
            qd_score=qd_score,
            norm_qd_score=qd_score / self._cells,
            max_fitness=self._max_fitness,
            mean_fitness=(self._objective_sum / n) if n else None,
            qd_offset=self._qd_offset,
        )

    # -- insertion -----------------------------------------------------------------

    def _validated_arrays(self, entries: Sequence[Elite]) -> tuple[np.ndarray, np.ndarray]:
        n = len(entries)
        d = self.space.dims
        try:
            desc = np.array([e.descriptor for e in entries], dtype=np.float64)
            fit = np.array([e.fitness for e in entries], dtype=np.float64)
        except (TypeError, ValueError):
            desc = fit = None  # ragged or non-numeric: find the culprit below
        if desc is None or desc.shape != (n, d):
            for e in entries:
                try:
                    ok = np.asarray(e.descriptor, dtype=np.float64).shape == (d,)
                    float(e.fitness)
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    raise ValueError(
                        f"entry id={e.id}: descriptor must be {d} numbers "
                        f"({list(self.space.names)}) and fitness a number; "
                        f"got descriptor={e.descriptor!r}, fitness={e.fitness!r}"
                    )
            raise ValueError("could not read the batch's descriptors and fitness as numbers")
        bad = ~(np.isfinite(fit) & np.isfinite(desc).all(axis=1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            e = entries[i]
            raise ValueError(
                f"entry id={e.id} has a non-finite fitness or descriptor "
                f"(fitness={e.fitness!r}, descriptor={e.descriptor!r}); the engine must "
                f"filter such evaluations before adding them ({int(bad.sum())} in this batch)"
            )
        return desc, fit

    def add(self, entries: Sequence[Elite]) -> list[AddOutcome]:
        """Offer a batch of evaluated programs; return one :class:`AddOutcome` per entry.

        The input ``Elite.cell`` is ignored (pass -1); the stored Elite carries the
        real cell. Semantics are pyribs' batch add with default settings: each
        status is computed against the archive before the batch (``NEW_CELL`` if
        the cell was empty, ``IMPROVED`` if the fitness is strictly greater than
        the current elite's, else ``NOT_ADDED``); among the entries of the batch
        that may enter a cell, only the one with the highest fitness is stored,
        the first in batch order on ties.

        Raises:
            ValueError: an entry has a non-finite fitness or descriptor, or a
                descriptor of the wrong length (the message names its id).
        """
        n = len(entries)
        if n == 0:
            return []
        desc, fit = self._validated_arrays(entries)

        oob = ((desc < self._lower) | (desc > self._upper)).any(axis=1)
        n_oob = int(oob.sum())
        if n_oob and self._policy == "reject":
            self._rejected += n_oob
            kept = np.flatnonzero(~oob)
            desc, fit_k = desc[kept], fit[kept]
        else:
            self._clipped += n_oob
            kept = None
            fit_k = fit

        cells = self._index_clipped(np.clip(desc, self._lower, self._upper))
        cur_fit = self._fitness[cells]
        cur_occ = self._occupied[cells]
        can = fit_k > cur_fit  # empty cells hold -inf
        codes = np.where(can, np.where(cur_occ, 1, 2), 0)

        stored: dict[int, Elite] = {}  # position in the kept arrays -> stored Elite
        cand = np.flatnonzero(can)
        if cand.size:
            c = cells[cand]
            # Group by cell, best fitness first, batch order breaks ties (pyribs'
            # argmax aggregation keeps the first maximum).
            order = np.lexsort((cand, -fit_k[cand], c))
            c_sorted = c[order]
            first = np.empty(c_sorted.size, dtype=bool)
            first[0] = True
            np.not_equal(c_sorted[1:], c_sorted[:-1], out=first[1:])
            win = cand[order[first]]  # ascending cell order, like pyribs
            win_cells = cells[win]
            win_fit = fit_k[win]
            old_occ = self._occupied[win_cells]
            old_fit = np.where(old_occ, self._fitness[win_cells], 0.0)

            # Same update as pyribs so stats agree bit for bit on the same inputs.
            self._objective_sum = self._objective_sum + float(np.sum(win_fit - old_fit))
            best = float(win_fit.max())
            if self._max_fitness is None or best > self._max_fitness:
                self._max_fitness = best
            self._fitness[win_cells] = win_fit
            self._occupied[win_cells] = True
            if not old_occ.all():
                self._occupied_sorted = None

            src = win if kept is None else kept[win]  # positions in `entries`
            for pos, i, cell in zip(win.tolist(), src.tolist(), win_cells.tolist()):
                e = entries[i]
                elite = e if e.cell == cell else dataclasses.replace(e, cell=cell)
                self._elites[cell] = elite
                stored[pos] = elite
            self._stats = self._make_stats()

        status_list = codes.tolist()
        cell_list = cells.tolist()
        gain = np.where(codes == 2, fit_k - self._qd_offset, np.where(codes == 1, fit_k - cur_fit, 0.0)).tolist()
        if kept is None:
            oob_list = oob.tolist()
            return [
                AddOutcome(_STATUS_BY_CODE[s], cl, o, stored.get(i), g)
                for i, (s, cl, o, g) in enumerate(zip(status_list, cell_list, oob_list, gain))
            ]
        rejected = AddOutcome(None, None, True, None)
        out = [rejected] * n
        for pos, i in enumerate(kept.tolist()):
            status = _STATUS_BY_CODE[status_list[pos]]
            out[i] = AddOutcome(status, cell_list[pos], False, stored.get(pos), gain[pos])
        return out

    def _base_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space": self.space.to_dict(),
            "cells": self._cells,
            "qd_offset": self._qd_offset,
            "out_of_bounds": self._policy,
        }


class GridArchive(Archive):
    """Archive whose cells are a regular grid: ``bins[i]`` equal bins along dimension ``i``.

    The bin of ``x`` along a dimension is pyribs' ``int((bins * (x - lower) +
    epsilon) / (upper - lower))`` clipped to ``[0, bins - 1]``: so ``x == upper``
    falls in the last bin, and a value within about ``epsilon`` (in units of
    ``bins * descriptor``) below a bin boundary is rounded up into the next bin
    to absorb floating-point error, exactly as pyribs does. The flat cell index
    is the C-order ravel (``np.ravel_multi_index``) of the per-dimension bins.

    Args:
        space: descriptor names and bounds.
        bins: bins per dimension; defaults to ``space.bins``.
        qd_offset: subtracted from each fitness in the QD score.
        out_of_bounds: ``"clip"`` or ``"reject"``.
        epsilon: pyribs' index epsilon (default 1e-6, as in pyribs).
    """

    kind: ClassVar[str] = "grid"

    def __init__(
        self,
        *,
        space: DescriptorSpace,
        bins: Sequence[int] | None = None,
        qd_offset: float = 0.0,
        out_of_bounds: str = "clip",
        epsilon: float = 1e-6,
    ) -> None:
        bins_t = tuple(space.bins if bins is None else bins)
        if len(bins_t) != space.dims:
            raise ValueError(
                f"bins has {len(bins_t)} entries but the descriptor space has {space.dims} "
                f"dimensions {list(space.names)}; give one bin count per dimension"
            )
        if any(int(b) != b or b < 1 for b in bins_t):
            raise ValueError(f"bins must be positive integers, got {list(bins_t)}")
        self._bins = tuple(int(b) for b in bins_t)
        super().__init__(
            space=space,
            cells=math.prod(self._bins),
            qd_offset=qd_offset,
            out_of_bounds=out_of_bounds,
        )
        self._epsilon = float(epsilon)
        self._bins_arr = np.asarray(self._bins, dtype=np.int64)
        self._interval = self._upper - self._lower
        self._boundaries = [
            np.linspace(lo, hi, b + 1) for lo, hi, b in zip(self._lower, self._upper, self._bins)
        ]
        # Row-major strides, so ravelling is one dot product (ravel_multi_index
        # would re-validate every call).
        self._strides = np.asarray(
            [math.prod(self._bins[i + 1 :]) for i in range(len(self._bins))], dtype=np.int64
        )

    @property
    def bins(self) -> tuple[int, ...]:
        return self._bins

    @property
    def boundaries(self) -> list[np.ndarray]:
        """Per dimension, the ``bins[i] + 1`` bin edges (``linspace(lower, upper, bins + 1)``)."""
        return self._boundaries

    def _index_clipped(self, descriptors: np.ndarray) -> np.ndarray:
        # Operation order copied from pyribs GridArchive.index_of: identical
        # float rounding means identical cells right at bin edges.
        scaled = (self._bins_arr * (descriptors - self._lower) + self._epsilon) / self._interval
        grid = scaled.astype(np.int64)
        np.clip(grid, 0, self._bins_arr - 1, out=grid)
        return grid @ self._strides

    def grid_index(self, cell: int) -> tuple[int, ...]:
        """Per-dimension bin indices of a flat cell index."""
        if not 0 <= cell < self._cells:
            raise IndexError(f"cell {cell} out of range [0, {self._cells})")
        return tuple(int(i) for i in np.unravel_index(int(cell), self._bins))

    def cell_center(self, cell: int) -> tuple[float, ...]:
        idx = self.grid_index(cell)
        return tuple(float((b[i] + b[i + 1]) / 2) for b, i in zip(self._boundaries, idx))

    def to_dict(self) -> dict[str, Any]:
        d = self._base_dict()
        d.update(
            bins=list(self._bins),
            lower=list(self.space.lower),
            upper=list(self.space.upper),
            epsilon=self._epsilon,
        )
        return d


def _try_ckdtree():
    try:
        from scipy.spatial import cKDTree  # optional: much faster k-means and lookups
    except ImportError:  # pragma: no cover - scipy is present in dev environments
        return None
    return cKDTree


def _nearest_numpy(
    points: np.ndarray, centroids: np.ndarray, chunk_elems: int = 1 << 21
) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) for each row of ``points``.

    Squared distances are accumulated one dimension at a time from exact
    differences (not the ``|x|^2 - 2x.c + |c|^2`` expansion, whose cancellation
    can pick the wrong centroid near ties); rows are processed in chunks so the
    ``(chunk, k)`` distance matrix stays around ``chunk_elems`` floats.
    """
    n, d = points.shape
    k = centroids.shape[0]
    out = np.empty(n, dtype=np.int64)
    step = max(1, chunk_elems // max(k, 1))
    cols = [centroids[:, j][None, :] for j in range(d)]
    for s in range(0, n, step):
        block = points[s : s + step]
        dist = np.zeros((block.shape[0], k), dtype=np.float64)
        for j in range(d):
            diff = block[:, j : j + 1] - cols[j]
            diff *= diff
            dist += diff
        out[s : s + step] = np.argmin(dist, axis=1)
    return out


def kmeans_centroids(
    *,
    lower: np.ndarray,
    upper: np.ndarray,
    cells: int,
    samples: int,
    seed: int,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> np.ndarray:
    """Centroids from Lloyd's k-means over ``samples`` uniform points in the bounds.

    Seeded and deterministic: ``np.random.default_rng(seed)`` draws the samples
    and picks ``cells`` distinct samples as initial centroids (sklearn's
    ``init="random"``, as pyribs uses). Iterates until the total squared centroid
    shift is at most ``tol * mean(var(samples))`` (sklearn's criterion) or
    ``max_iter``. A centroid that loses all its points keeps its position.
    Returns a ``(cells, d)`` float64 array.
    """
    rng = np.random.default_rng(seed)
    d = lower.shape[0]
    x = rng.uniform(lower, upper, size=(samples, d))
    c = x[rng.choice(samples, size=cells, replace=False)].copy()
    threshold = tol * float(np.mean(np.var(x, axis=0)))
    tree_cls = _try_ckdtree()
    for _ in range(max_iter):
        labels = tree_cls(c).query(x)[1] if tree_cls is not None else _nearest_numpy(x, c)
        counts = np.bincount(labels, minlength=cells)
        sums = np.stack(
            [np.bincount(labels, weights=x[:, j], minlength=cells) for j in range(d)], axis=1
        )
        filled = counts > 0
        new = c.copy()
        new[filled] = sums[filled] / counts[filled, None]
        shift = float(np.sum((new - c) ** 2))
        c = new
        if shift <= threshold:
            break
    return c


class CVTArchive(Archive):
    """Archive whose cells are the Voronoi regions of ``cells`` centroids.

    Centroids come from seeded k-means over ``samples`` uniform points in the
    descriptor bounds (raw descriptor units, as pyribs does; rescale descriptors
    if their ranges differ wildly). Building 1000 centroids from the default
    50,000 samples takes about a second with scipy, 10-20 s without.
    Same seed, same centroids. A descriptor's cell is its nearest centroid
    (Euclidean) after clipping into bounds; scipy's cKDTree is used when
    available, else a chunked numpy search.

    Args:
        space: descriptor names and bounds (``space.bins`` is not used).
        cells: number of centroids.
        samples: uniform samples for k-means; at least ``cells``.
        seed: seed for samples and initial centroids.
        qd_offset: subtracted from each fitness in the QD score.
        out_of_bounds: ``"clip"`` or ``"reject"``.
    """

    kind: ClassVar[str] = "cvt"

    def __init__(
        self,
        *,
        space: DescriptorSpace,
        cells: int,
        samples: int = 50_000,
        seed: int = 0,
        qd_offset: float = 0.0,
        out_of_bounds: str = "clip",
    ) -> None:
        if int(cells) != cells or cells < 1:
            raise ValueError(f"cells must be a positive integer, got {cells!r}")
        if int(samples) != samples or samples < cells:
            raise ValueError(
                f"samples must be an integer >= cells ({cells}) so every centroid starts on a "
                f"distinct sample, got {samples!r}"
            )
        super().__init__(
            space=space, cells=int(cells), qd_offset=qd_offset, out_of_bounds=out_of_bounds
        )
        self._samples = int(samples)
        self._seed = int(seed)
        self._centroids = kmeans_centroids(
            lower=self._lower,
            upper=self._upper,
            cells=self._cells,
            samples=self._samples,
            seed=self._seed,
        )
        self._centroids.setflags(write=False)
        tree_cls = _try_ckdtree()
        self._tree = tree_cls(self._centroids) if tree_cls is not None else None

    @property
    def centroids(self) -> np.ndarray:
        """Read-only ``(cells, d)`` array of centroids."""
        return self._centroids

    def _index_clipped(self, descriptors: np.ndarray) -> np.ndarray:
        if self._tree is not None:
            return np.asarray(self._tree.query(descriptors)[1], dtype=np.int64)
        return _nearest_numpy(descriptors, self._centroids)

    def cell_center(self, cell: int) -> tuple[float, ...]:
        if not 0 <= cell < self._cells:
            raise IndexError(f"cell {cell} out of range [0, {self._cells})")
        return tuple(float(v) for v in self._centroids[int(cell)])

    def to_dict(self) -> dict[str, Any]:
        d = self._base_dict()
        d.update(samples=self._samples, seed=self._seed, centroids=self._centroids.tolist())
        return d


# The parent selectors lived here until they moved to elm.selection; a config or a stored run that
# names one by its old dotted path (qd.selection=elm.archive.UniformSelector) still resolves.
_MOVED_TO_SELECTION = frozenset({
    "CuriositySelector", "FrontierSelector", "ParentSelector", "TournamentSelector",
    "UniformSelector", "make_selector",
})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_SELECTION:
        import warnings

        from elm import selection

        warnings.warn(
            f"elm.archive.{name} moved to elm.selection.{name}; use the new path",
            DeprecationWarning, stacklevel=2,
        )
        return getattr(selection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
