"""Inspirations: other elites shown to a language-model operator beside a child's parent(s).

FunSearch and OpenEvolve put several scored programs into each prompt ("best-shot" prompting): the
model sees what scored well and writes the next version. The engine chooses them here, per child,
from the archive the parent came from; the operator decides how to show them
(:attr:`elm.mutator.Mutator.inspirations`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from elm.types import Elite

__all__ = ["choose_inspirations"]


def choose_inspirations(elites: Sequence[Elite], *, exclude: Sequence[int], k: int,
                        rng: np.random.Generator) -> list[Elite]:
    """Up to ``k`` elites other than those in ``exclude`` (the child's parents, by id): the best
    ``ceil(k / 2)`` by fitness, then the rest drawn uniformly from the others (diversity), returned
    sorted by fitness, lowest first (the order FunSearch shows versions in, so that the parent,
    shown last, continues an improving sequence).

    Fewer than ``k`` when the archive holds fewer other elites; ``[]`` for ``k == 0``.
    """
    if k <= 0:
        return []
    skip = set(exclude)
    pool = [e for e in elites if e.id not in skip]
    if len(pool) <= k:
        chosen = pool
    else:
        by_fitness = sorted(pool, key=lambda e: (-e.fitness, e.id))
        best = by_fitness[: (k + 1) // 2]
        rest = by_fitness[len(best):]
        picks = rng.choice(len(rest), size=k - len(best), replace=False)
        chosen = best + [rest[int(i)] for i in sorted(picks)]
    return sorted(chosen, key=lambda e: (e.fitness, e.id))
