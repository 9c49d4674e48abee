"""What the circle-packing seeds' construction can reach at all, whatever a search does with it.

Every circle-packing seed lays out centres from a few constants and derives
radii with the same greedy routine, ``valid_radii`` (wall distance, shrink
overlapping pairs, one growth pass). GP edits re-tune, swap, copy or delete
parts of that; they never write a new radius routine. This prints, for n = 26:

1. the best of ``--starts`` SLSQP optimisations of centres and radii together
   (the kind of program the published 2.63 results evolve);
2. the greedy ``valid_radii`` on those optimised centres (in their own order and
   smallest-first), and the optimal radii for them (a linear programme);
3. a (1+1) local search over the 52 centre coordinates themselves, scored by
   ``valid_radii``, started from those centres and from the seeds' best layout
   family (the 5 x 5 grid with one circle in a gap, 2.54142), ``--steps`` each.

So it separates "the routine caps the score" from "the layouts GP can express
cap it". Needs scipy (installed with the ``dev`` extra). Asserts nothing.

    python -m benchmarks.circle_packing_ceiling [--starts 30] [--steps 20000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from environments import CirclePacking


def _greedy_radii():
    """The seeds' ``valid_radii``, taken from the grid seed's source (the same routine in every seed)."""
    namespace: dict = {}
    exec(CirclePacking(n=26).seed_programs()[0], namespace)  # our own seed program, not a candidate
    return namespace["valid_radii"]


def _slsqp(n: int, starts: int) -> tuple[float, np.ndarray, np.ndarray]:
    from scipy.optimize import minimize

    iu = np.triu_indices(n, 1)

    def pairs(z):
        c, r = z[: 2 * n].reshape(n, 2), z[2 * n:]
        return np.hypot(*(c[iu[0]] - c[iu[1]]).T) - r[iu[0]] - r[iu[1]]

    def walls(z):
        c, r = z[: 2 * n].reshape(n, 2), z[2 * n:]
        return np.concatenate([c[:, 0] - r, 1 - c[:, 0] - r, c[:, 1] - r, 1 - c[:, 1] - r])

    best = (-np.inf, None, None)
    for start in range(starts):
        rng = np.random.default_rng(start)
        z0 = np.concatenate([rng.uniform(0.1, 0.9, 2 * n), np.full(n, 0.05)])
        res = minimize(lambda z: -z[2 * n:].sum(), z0, method="SLSQP",
                       constraints=[{"type": "ineq", "fun": pairs}, {"type": "ineq", "fun": walls}],
                       bounds=[(0, 1)] * (2 * n) + [(0, 0.5)] * n, options={"maxiter": 1000})
        if -res.fun > best[0] and np.all(pairs(res.x) > -1e-9) and np.all(walls(res.x) > -1e-9):
            best = (-res.fun, res.x[: 2 * n].reshape(n, 2), res.x[2 * n:])
    return best


def _lp_radii(centres: np.ndarray) -> float:
    from scipy.optimize import linprog

    n = len(centres)
    iu = np.triu_indices(n, 1)
    a = np.zeros((len(iu[0]), n))
    a[np.arange(len(iu[0])), iu[0]] = a[np.arange(len(iu[0])), iu[1]] = 1
    gaps = np.hypot(*(centres[iu[0]] - centres[iu[1]]).T)
    wall = np.minimum(centres, 1 - centres).min(axis=1)
    return float(-linprog(-np.ones(n), A_ub=a, b_ub=gaps, bounds=list(zip([0] * n, wall))).fun)


def _local_search(centres: np.ndarray, radii_of, steps: int, seed: int) -> list[tuple[int, float]]:
    """(1+1) search moving one centre at a time; returns (step, best) at quarters of ``steps``."""
    rng = np.random.default_rng(seed)
    best = float(radii_of(centres).sum())
    trace, sigma = [(0, best)], 0.01
    for step in range(1, steps + 1):
        trial = centres.copy()
        k = int(rng.integers(len(trial)))
        trial[k] = np.clip(trial[k] + rng.normal(0.0, sigma, 2), 0.0, 1.0)
        value = float(radii_of(trial).sum())
        if value > best:
            best, centres = value, trial
        if step % max(1, steps // 4) == 0:
            trace.append((step, best))
            sigma /= 2
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=30, help="SLSQP random starts")
    parser.add_argument("--steps", type=int, default=20000, help="local-search steps per start point")
    args = parser.parse_args()
    n, greedy = 26, _greedy_radii()
    t0 = time.perf_counter()
    total, centres, radii = _slsqp(n, args.starts)
    print(f"SLSQP over centres and radii, best of {args.starts} starts: {total:.5f} ({time.perf_counter() - t0:.0f} s)")
    smallest_first = centres[np.argsort(radii)]
    print(f"  greedy valid_radii on those centres: {greedy(centres).sum():.5f} as found, "
          f"{greedy(smallest_first).sum():.5f} smallest circle first")
    print(f"  optimal radii for those centres (LP): {_lp_radii(centres):.5f}")
    side = 5  # the seeds' best family: a 5 x 5 grid at spacing 1/5, one circle where four meet
    grid = np.array([((j + 0.5) / side, (i + 0.5) / side) for i in range(side) for j in range(side)]
                    + [(1.0 / side, 1.0 / side)])
    print(f"grid with one circle in a gap: greedy {greedy(grid).sum():.5f}, LP {_lp_radii(grid):.5f}")
    for label, start in (("the SLSQP centres, smallest first", smallest_first), ("the grid layout", grid)):
        trace = _local_search(start, greedy, args.steps, seed=0)
        print(f"(1+1) search over the 52 coordinates from {label}, scored by valid_radii: "
              + ", ".join(f"{value:.5f} at {step}" for step, value in trace))


if __name__ == "__main__":
    main()
