"""Elites and descriptor spaces for the archive and selection tests."""

from __future__ import annotations

from elm.types import DescriptorSpace, Elite

_next_id = iter(range(10**9))


def space(lower, upper, bins) -> DescriptorSpace:
    return DescriptorSpace(
        names=tuple(f"d{i}" for i in range(len(lower))), lower=lower, upper=upper, bins=bins
    )


SPACE_1D = space((0.0,), (1.0,), (10,))


def e(fitness, *descriptor, id=None) -> Elite:
    """An elite with ``fitness`` at ``descriptor``; a fresh id unless one is given."""
    return Elite(
        id=next(_next_id) if id is None else id,
        cell=-1,
        source="def f(): pass",
        fitness=fitness,
        descriptor=tuple(float(x) for x in descriptor),
    )
