"""The island model: several archives that evolve apart and exchange their best programs.

Each island is a whole archive (same geometry as the run's) with its own parent selector. A batch
of children is written for one island (the one that has had the fewest children so far): its
parents come from that island and its children are offered to that island (and to the run's
global archive, which every statistic, export and dashboard reads). Every ``migration_interval``
evaluations each island sends copies of its ``migrants`` best elites to the next island in a ring.
Every ``reset_interval`` evaluations the weakest ``reset_fraction`` of the islands (by best
fitness) are emptied and restarted from the best elite of a surviving island, as in FunSearch.
Migrations and resets are recorded (``island_events``), so a resumed run rebuilds its islands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from elm.archive import AddOutcome, Archive
from elm.config import IslandsConfig
from elm.selection import ParentSelector
from elm.types import Elite

__all__ = ["IslandModel"]


class IslandModel:
    """``cfg.count`` islands built by ``make_archive()`` / ``make_selector()``; see the module docstring."""

    def __init__(self, cfg: IslandsConfig, *, make_archive: Callable[[], Archive],
                 make_selector: Callable[[], ParentSelector], seed: int) -> None:
        if cfg.count < 2:
            raise ValueError(f"an island model needs search.islands.count >= 2, got {cfg.count}")
        if cfg.migration_interval < 0 or cfg.reset_interval < 0 or cfg.migrants < 0:
            raise ValueError("search.islands: migration_interval, reset_interval and migrants must be >= 0")
        if not 0 < cfg.reset_fraction < 1:
            raise ValueError(f"search.islands.reset_fraction must be in (0, 1), got {cfg.reset_fraction}")
        self.cfg = cfg
        self._make_archive = make_archive
        self.archives = [make_archive() for _ in range(cfg.count)]
        self.selectors = [make_selector() for _ in range(cfg.count)]
        self._make_selector = make_selector
        self._issued = [0] * cfg.count
        self._next_migration = cfg.migration_interval or None
        self._next_reset = cfg.reset_interval or None
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x15_1A_4D]))

    @property
    def count(self) -> int:
        return len(self.archives)

    def pick(self) -> int:
        """The island the next batch is written for: the one with the fewest children so far."""
        return int(np.argmin(self._issued))

    def issued(self, island: int, n: int) -> None:
        self._issued[island] += n

    def add(self, island: int, elites: Sequence[Elite]) -> list[AddOutcome]:
        """Offer evaluated children to ``island``'s archive; the selector remembers the stored ones."""
        outcomes = self.archives[island].add(elites)
        self.selectors[island].remember([o.elite for o in outcomes if o.elite is not None])
        return outcomes

    def seed_all(self, elites: Sequence[Elite]) -> None:
        """Every island starts from the seed programs."""
        for island in range(self.count):
            self.add(island, elites)

    # ------------------------------------------------------------------ migration and resets
    def step(self, evaluations: int) -> list[dict]:
        """Migrate and reset when their intervals have passed; returns the events (store rows)."""
        events: list[dict] = []
        if self._next_migration is not None and evaluations >= self._next_migration:
            events += self.migrate(evaluations)
            while self._next_migration <= evaluations:
                self._next_migration += self.cfg.migration_interval
        if self._next_reset is not None and evaluations >= self._next_reset:
            events += self.reset(evaluations)
            while self._next_reset <= evaluations:
                self._next_reset += self.cfg.reset_interval
        return events

    def migrate(self, evaluations: int) -> list[dict]:
        """Each island's best ``migrants`` elites are copied into the next island (ring)."""
        if self.cfg.migrants == 0:
            return []
        best = [sorted(a.elites(), key=lambda e: -e.fitness)[: self.cfg.migrants] for a in self.archives]
        events = []
        for source, elites in enumerate(best):
            target = (source + 1) % self.count
            if elites:
                self.add(target, elites)
                events.append({"evaluations": evaluations, "kind": "migrate", "source": source, "target": target,
                               "elite_ids": [e.id for e in elites]})
        return events

    def reset(self, evaluations: int) -> list[dict]:
        """Empty the weakest islands; each restarts from the best elite of a random surviving island."""
        best = [a.stats().max_fitness for a in self.archives]
        order = sorted(range(self.count), key=lambda i: (-np.inf if best[i] is None else best[i], i))
        n_reset = max(1, int(self.count * self.cfg.reset_fraction))
        weak, strong = order[:n_reset], order[n_reset:]
        events = []
        for island in weak:
            donor = int(self._rng.choice(strong))
            elites = self.archives[donor].elites()
            champion = max(elites, key=lambda e: e.fitness) if elites else None
            self.archives[island] = self._make_archive()
            self.selectors[island] = self._make_selector()
            if champion is not None:
                self.add(island, [champion])
            events.append({"evaluations": evaluations, "kind": "reset", "source": donor, "target": island,
                           "elite_ids": [champion.id] if champion is not None else []})
        return events

    def replay_event(self, event: dict, elites_by_id: dict[int, Elite]) -> None:
        """Re-apply a recorded migration or reset (resume), with the elites it copied."""
        target = int(event["target"])
        copied = [elites_by_id[i] for i in event["elite_ids"] if i in elites_by_id]
        if event["kind"] == "reset":
            self.archives[target] = self._make_archive()
            self.selectors[target] = self._make_selector()
        if copied:
            self.add(target, copied)

    def restore_schedule(self, evaluations: int, issued: Sequence[int]) -> None:
        """After a replay: the next migration/reset after ``evaluations``, and children per island."""
        if self.cfg.migration_interval:
            self._next_migration = (evaluations // self.cfg.migration_interval + 1) * self.cfg.migration_interval
        if self.cfg.reset_interval:
            self._next_reset = (evaluations // self.cfg.reset_interval + 1) * self.cfg.reset_interval
        self._issued = list(issued)

    def rows(self, evaluations: int) -> list[dict]:
        """Rows of the store's ``islands`` table: each island's archive statistics now."""
        out = []
        for i, a in enumerate(self.archives):
            s = a.stats()
            out.append({"evaluations": evaluations, "island": i, "num_elites": s.num_elites,
                        "qd_score": s.qd_score, "max_fitness": s.max_fitness})
        return out
