"""Throughput of ``Archive.add`` for engine-sized batches (prints figures, asserts nothing).

Run: ``python benchmarks/bench_archive.py``. Entries are drawn once up front
(seeded) so only ``add`` is timed; fitness drifts upwards so that a steady share
of entries keeps improving cells, as in a real run.
"""

from __future__ import annotations

import time

import numpy as np

from elm.archive import Archive, CVTArchive, GridArchive
from elm.types import DescriptorSpace, Elite

BATCH = 64
ENTRIES = 64 * 1_000


def make_entries(n: int, dims: int, seed: int) -> list[Elite]:
    rng = np.random.default_rng(seed)
    desc = rng.uniform(-0.01, 1.01, size=(n, dims))  # ~6% out of bounds (clip path)
    fit = rng.normal(size=n) + np.linspace(0.0, 3.0, n)
    return [
        Elite(id=i, cell=-1, source="def f(): pass", fitness=float(f), descriptor=tuple(d))
        for i, (f, d) in enumerate(zip(fit.tolist(), desc.tolist()))
    ]


def bench(label: str, archive: Archive, entries: list[Elite]) -> None:
    batches = [entries[i : i + BATCH] for i in range(0, len(entries), BATCH)]
    t0 = time.perf_counter()
    for b in batches:
        archive.add(b)
    dt = time.perf_counter() - t0
    s = archive.stats()
    print(
        f"{label:<24} {len(entries) / dt:>10,.0f} entries/s  "
        f"{dt / len(entries) * 1e6:6.2f} us/entry  "
        f"(batches of {BATCH}; coverage {s.coverage:.3f}, clipped {archive.clipped})"
    )


def main() -> None:
    space = DescriptorSpace(
        names=("x", "y", "z"), lower=(0, 0, 0), upper=(1, 1, 1), bins=(12, 12, 12)
    )
    entries = make_entries(ENTRIES, 3, seed=0)
    bench("grid 12x12x12", GridArchive(space=space), entries)
    bench("grid 12x12x12 reject", GridArchive(space=space, out_of_bounds="reject"), entries)
    t0 = time.perf_counter()
    cvt = CVTArchive(space=space, cells=1000, seed=0)
    print(f"{'cvt 1000 build':<24} {time.perf_counter() - t0:10.2f} s (50,000 k-means samples)")
    bench("cvt 1000 cells", cvt, entries)


if __name__ == "__main__":
    main()
