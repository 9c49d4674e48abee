"""Parent selection: which elites of an archive become the parents of the next children.

A :class:`ParentSelector` draws parents from an :class:`~elm.archive.Archive` through its public
read accessors (``occupied_cells``, ``occupancy``, ``fitness_at``, ``elites_at``) and may learn from
the children's outcomes (``update``). Built-ins are chosen by name in ``qd.selection``
(:func:`make_selector`); a custom selector is a subclass named by its dotted path.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from elm.archive import AddOutcome, Archive, GridArchive
from elm.types import AddStatus, Elite

__all__ = [
    "CuriositySelector",
    "FrontierSelector",
    "ParentSelector",
    "TournamentSelector",
    "UniformSelector",
    "make_selector",
]

# statuses that mean "this child could enter the archive" (see AddOutcome: a batch-mate may have won)
_ENTERED = (AddStatus.NEW_CELL, AddStatus.IMPROVED)



class ParentSelector(ABC):
    """Chooses parents among the current elites; may learn from children's outcomes.

    ``select`` draws with replacement and is deterministic given ``rng``.
    ``update`` gives feedback: child ``i`` had parents ``parent_ids[i]`` (elite
    ids) and was offered to the archive with outcome ``outcomes[i]``.
    """

    name: ClassVar[str] = "selector"

    @abstractmethod
    def select(self, archive: Archive, n: int, rng: np.random.Generator) -> list[Elite]:
        """``n`` elites drawn with replacement. ValueError if the archive is empty."""

    def update(self, parent_ids: Sequence[Sequence[int]], outcomes: Sequence[AddOutcome]) -> None:
        if len(parent_ids) != len(outcomes):
            raise ValueError(
                f"update needs one parent-id tuple per outcome, got {len(parent_ids)} "
                f"and {len(outcomes)}"
            )

    def check_archive(self, archive: Archive) -> None:
        """Raise ValueError, saying what to use instead, if this selector cannot work with
        ``archive``'s kind (checked once when a run's config is validated). Default: any archive."""

    def remember(self, elites: Sequence[Elite]) -> None:
        """Note elites that may later appear as parents in ``update`` without having
        been returned by ``select`` in this process (a resumed run replays its
        history this way). Default: nothing to remember."""

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("name") != self.name:
            raise ValueError(f"state is for selector {d.get('name')!r}, not {self.name!r}")

    @staticmethod
    def _occupied(archive: Archive, n: int) -> np.ndarray:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if len(archive) == 0:
            raise ValueError(
                "cannot select parents from an empty archive; add the seed programs first"
            )
        return archive.occupied_cells()


class UniformSelector(ParentSelector):
    """Uniform over occupied cells (classic MAP-Elites)."""

    name: ClassVar[str] = "uniform"

    def select(self, archive: Archive, n: int, rng: np.random.Generator) -> list[Elite]:
        occ = self._occupied(archive, n)
        picks = occ[rng.integers(0, occ.size, size=n)]
        return archive.elites_at(picks)


class TournamentSelector(ParentSelector):
    """Each parent is the fittest of ``size`` elites drawn uniformly over occupied cells (with
    replacement): selection pressure toward good programs that still reaches every cell.

    ``size=1`` is uniform selection; 2-3 is mild pressure. Ties go to the first drawn.
    """

    name: ClassVar[str] = "tournament"

    def __init__(self, *, size: int = 2) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"tournament size must be an int >= 1, got {size!r}")
        self.size = size

    def select(self, archive: Archive, n: int, rng: np.random.Generator) -> list[Elite]:
        occ = self._occupied(archive, n)
        draws = occ[rng.integers(0, occ.size, size=(n, self.size))]
        fit = archive.fitness_at(draws)
        picks = draws[np.arange(n), np.argmax(fit, axis=1)]
        return archive.elites_at(picks)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}


class FrontierSelector(ParentSelector):
    """Favours elites next to empty cells: an occupied cell is drawn with weight
    ``1 + weight * e``, where ``e`` is the number of its grid neighbours (one bin away along one
    descriptor axis: up to ``2 * dims``) that are empty.

    A child usually lands in or near its parent's cell, so parents on the edge of the explored
    region fill new cells more often than parents inside it; every elite keeps a weight of at
    least 1. ``weight=0`` is uniform selection. Needs a grid archive (a CVT archive's cells have no
    grid neighbours). Nothing is learned: the weights follow the archive as it is.
    """

    name: ClassVar[str] = "frontier"

    def __init__(self, *, weight: float = 3.0) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                math.isfinite(weight) and weight >= 0):
            raise ValueError(f"frontier weight must be a finite number >= 0, got {weight!r}")
        self.weight = float(weight)

    def check_archive(self, archive: Archive) -> None:
        if not isinstance(archive, GridArchive):
            raise ValueError(
                f"qd.selection=frontier needs a grid archive (qd.kind=grid), not {type(archive).__name__}: "
                "its cells have no grid neighbours; use qd.selection=uniform or curiosity there"
            )

    def weights(self, archive: Archive, cells: np.ndarray) -> np.ndarray:
        """The selection weight of each of ``cells`` (flat cell indices), shape ``(len(cells),)``."""
        self.check_archive(archive)
        bins = archive.bins
        # pad with occupied cells, so that the edge of the map is no frontier
        empty = np.pad(~archive.occupancy().reshape(bins), 1, constant_values=False)
        count = np.zeros(bins, dtype=np.int64)
        inner = [slice(1, b + 1) for b in bins]
        for axis, b in enumerate(bins):
            for step in (-1, 1):
                shifted = list(inner)
                shifted[axis] = slice(1 + step, b + 1 + step)
                count += empty[tuple(shifted)]
        return 1.0 + self.weight * count.ravel()[cells]

    def select(self, archive: Archive, n: int, rng: np.random.Generator) -> list[Elite]:
        occ = self._occupied(archive, n)
        w = self.weights(archive, occ)
        picks = occ[rng.choice(occ.size, size=n, p=w / w.sum())]
        return archive.elites_at(picks)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight}


class CuriositySelector(ParentSelector):
    """ELM's curiosity-driven selection, with scores kept per cell.

    Each cell starts at ``init_score``. For every child, each distinct parent's
    cell gains ``reward`` if the child's status was ``NEW_CELL`` or ``IMPROVED``
    (it could enter the archive; see :class:`AddOutcome`) and loses ``penalty``
    otherwise (including rejection), floored at ``min_score``. Selection is
    proportional to the scores of occupied cells.

    Keyed by cell rather than elite id, as in OpenELM: a cell whose elite is
    replaced keeps its score, since the score measures how productive that
    region of behaviour space has been, and feedback that arrives after the
    parent was replaced still lands. Parent ids are mapped to cells through the
    parents this selector returned (the last ``max_tracked`` of them); feedback
    for ids it never returned is ignored.
    """

    name: ClassVar[str] = "curiosity"

    def __init__(
        self,
        *,
        init_score: float = 1.0,
        reward: float = 1.0,
        penalty: float = 0.5,
        min_score: float = 0.1,
        max_tracked: int = 100_000,
    ) -> None:
        if not (min_score > 0 and math.isfinite(min_score)):
            raise ValueError(
                f"min_score must be positive and finite (scores are weights), got {min_score}"
            )
        if not (init_score >= min_score and math.isfinite(init_score)):
            raise ValueError(
                f"init_score must be finite and >= min_score ({min_score}), got {init_score}"
            )
        if not (reward >= 0 and penalty >= 0 and math.isfinite(reward) and math.isfinite(penalty)):
            raise ValueError(f"reward and penalty must be finite and >= 0, got {reward}, {penalty}")
        if max_tracked < 1:
            raise ValueError(f"max_tracked must be >= 1, got {max_tracked}")
        self.init_score = float(init_score)
        self.reward = float(reward)
        self.penalty = float(penalty)
        self.min_score = float(min_score)
        self.max_tracked = int(max_tracked)
        self._scores: dict[int, float] = {}
        # Insertion-ordered id -> cell for returned parents; oldest evicted first.
        self._parent_cell: dict[int, int] = {}

    def score(self, cell: int) -> float:
        """Current curiosity score of ``cell``."""
        return self._scores.get(int(cell), self.init_score)

    def select(self, archive: Archive, n: int, rng: np.random.Generator) -> list[Elite]:
        occ = self._occupied(archive, n)
        init, scores = self.init_score, self._scores
        w = np.fromiter(
            (scores.get(c, init) for c in occ.tolist()), dtype=np.float64, count=occ.size
        )
        picks = occ[rng.choice(occ.size, size=n, p=w / w.sum())]
        out = archive.elites_at(picks)
        track = self._parent_cell
        for e in out:
            track.pop(e.id, None)  # re-insert at the end: most recently used
            track[e.id] = e.cell
        while len(track) > self.max_tracked:
            del track[next(iter(track))]
        return out

    def remember(self, elites: Sequence[Elite]) -> None:
        track = self._parent_cell
        for e in elites:
            track.pop(e.id, None)
            track[e.id] = e.cell
        while len(track) > self.max_tracked:
            del track[next(iter(track))]

    def update(self, parent_ids: Sequence[Sequence[int]], outcomes: Sequence[AddOutcome]) -> None:
        super().update(parent_ids, outcomes)
        track, scores = self._parent_cell, self._scores
        for pids, outcome in zip(parent_ids, outcomes):
            delta = self.reward if outcome.status in _ENTERED else -self.penalty
            for pid in dict.fromkeys(pids):  # distinct, in order
                cell = track.get(pid)
                if cell is None:
                    continue
                scores[cell] = max(self.min_score, scores.get(cell, self.init_score) + delta)

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "init_score": self.init_score,
            "reward": self.reward,
            "penalty": self.penalty,
            "min_score": self.min_score,
            "max_tracked": self.max_tracked,
            # Lists of pairs: JSON object keys would turn the ints into strings.
            "scores": [[c, s] for c, s in sorted(self._scores.items())],
            "parent_cell": [[i, c] for i, c in self._parent_cell.items()],
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        fresh = CuriositySelector(
            init_score=d["init_score"],
            reward=d["reward"],
            penalty=d["penalty"],
            min_score=d["min_score"],
            max_tracked=d.get("max_tracked", self.max_tracked),
        )
        self.__dict__.update(fresh.__dict__)
        self._scores = {int(c): float(s) for c, s in d.get("scores", [])}
        self._parent_cell = {int(i): int(c) for i, c in d.get("parent_cell", [])}


_SELECTORS: dict[str, type[ParentSelector]] = {
    UniformSelector.name: UniformSelector,
    TournamentSelector.name: TournamentSelector,
    FrontierSelector.name: FrontierSelector,
    CuriositySelector.name: CuriositySelector,
}


def make_selector(name: str, **kwargs: Any) -> ParentSelector:
    """Build a selector: ``"uniform"``, ``"curiosity"``, or the dotted path of a ParentSelector class.

    ``kwargs`` go to its constructor (ValueError naming a key it does not take).
    """
    from elm.plugins import check_arguments, resolve_class

    if "." in name:
        cls = resolve_class(name, ParentSelector, what="qd.selection")
    else:
        try:
            cls = _SELECTORS[name]
        except KeyError:
            raise ValueError(
                f"unknown parent selector {name!r}; choose one of {sorted(_SELECTORS)} or give the "
                "dotted path of a ParentSelector subclass"
            ) from None
    check_arguments(cls, kwargs, what="qd.selection_args")
    return cls(**kwargs)
