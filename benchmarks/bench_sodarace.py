"""Sodarace walker evaluations per second on one core. Prints numbers, asserts nothing.

For each seed walker (and a large 40-joint walker near the limits) it measures,
single-threaded in this process:

* ``physics``: :meth:`Sodarace.score` alone: rule checks + simulation of
  ``--seconds`` simulated seconds (default 10, the environment's default);
* ``evaluation``: :meth:`Sodarace.evaluate_local`: run the program, JSON round
  trip, score: everything an evaluation does except the sandbox's fork;

as evaluations per CPU-second (``time.process_time``): the best of
``--repeat`` calls (what one uncontended core does; timeit's convention) and
the median (which rises when other processes share the core: on a 2-core
machine busy with other work the two differ by up to 1.6x). Wall-clock rates
are the medians. With ``--sandbox process`` or ``--sandbox
gvisor`` it also pushes a batch of the seeds through a one-slot sandbox (one
core) and reports wall-clock evaluations per second, sandbox overhead
included. Run from the repository root::

    python -m benchmarks.bench_sodarace [--seconds 10] [--repeat 20] [--terrain flat] [--sandbox gvisor]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from elm.environment import roundtrip_json  # noqa: E402
from environments.sodarace import Sodarace  # noqa: E402
from environments.sodarace.seeds import SEEDS  # noqa: E402

LARGE = '''
from environments.sodarace import Walker


def make_walker():
    """40 joints in an 8 x 5 lattice, every neighbour pair joined (diagonals too): 123 connections."""
    w = Walker()
    grid = {}
    for i in range(8):
        for j in range(5):
            grid[i, j] = w.add_joint(0.2 * i, 0.2 * j)
    k = 0
    for (i, j), a in sorted(grid.items()):
        for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):
            b = grid.get((i + di, j + dj))
            if b is None:
                continue
            if k % 3 == 0 and k < 3 * 64:
                w.add_muscle(a, b, amplitude=0.2, phase=0.1 * i)
            else:
                w.add_bone(a, b)
            k += 1
    return w
'''


def measure(fn, repeat: int) -> tuple[float, float, float]:
    """(best CPU seconds, median CPU seconds, median wall seconds) per call of ``fn``."""
    fn()  # warm-up
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per walker")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--terrain", default="flat")
    parser.add_argument("--sandbox", choices=["none", "process", "gvisor"], default="none")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    env = Sodarace(terrain=args.terrain, duration_s=args.seconds)
    programs = {**SEEDS, "large (40 joints)": LARGE}
    print(f"Sodarace, terrain={args.terrain}, {args.seconds:g} simulated s per walker, one core; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'':44s} | {'physics only (score) eval/s':^26s} | {'whole evaluation eval/s':^26s}")
    print(f"{'walker':20s} {'joints':>6s} {'springs':>7s} {'fitness':>8s} | "
          f"{'CPU best':>8s} {'median':>8s} {'wall':>8s} | {'CPU best':>8s} {'median':>8s} {'wall':>8s}")
    best, median = [], []
    for name, source in programs.items():
        output = roundtrip_json(env.execute(source))
        ev = env.score(output)
        phys = measure(lambda: env.score(output), args.repeat)  # noqa: B023 (called here)
        full = measure(lambda: env.evaluate_local(source), args.repeat)  # noqa: B023 (called here)
        best.append(1 / full[0])
        median.append(1 / full[1])
        springs = ev.info["bones"] + ev.info["muscles"]
        print(f"{name:20s} {ev.info['joints']:6d} {springs:7d} {ev.fitness:8.3f} | "
              + " ".join(f"{1 / v:8.0f}" for v in phys) + " | " + " ".join(f"{1 / v:8.0f}" for v in full))
    n = len(SEEDS)
    print(f"seed walkers, whole evaluation on one core: {statistics.mean(best[:n]):.0f} evaluations per CPU-second "
          f"(best of {args.repeat}; slowest seed {min(best[:n]):.0f}), median {statistics.mean(median[:n]):.0f}; "
          f"target >= 100")

    if args.sandbox != "none":
        from elm.sandbox import EnvironmentSpec, SandboxLimits
        from elm.types import EvalRequest
        from sandbox import make_sandbox

        spec = EnvironmentSpec("environments.sodarace.Sodarace",
                               {"terrain": args.terrain, "duration_s": args.seconds})
        sources = list(SEEDS.values()) * max(1, args.repeat // 2)
        with make_sandbox(args.sandbox, env=spec, limits=SandboxLimits(timeout_s=30), workers=1) as sb:
            sb.evaluate([EvalRequest(id=0, source=sources[0])])  # warm
            w0 = time.perf_counter()
            results = sb.evaluate([EvalRequest(id=i, source=s) for i, s in enumerate(sources)])
            wall = time.perf_counter() - w0
        ok = sum(r.ok for r in results)
        print(f"{args.sandbox} sandbox, 1 slot: {len(sources) / wall:.0f} evaluations/s wall "
              f"({ok}/{len(sources)} ok, mean run {statistics.mean(r.run_s for r in results) * 1e3:.1f} ms, "
              f"score {statistics.mean(r.score_s for r in results) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
