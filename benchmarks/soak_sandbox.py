"""Soak: thousands of mixed candidates, a share of them hostile, through one evaluator worker.

One ``GVisorSandbox`` with ``--workers`` slots (one evaluator worker) evaluates
``--n`` candidates in batches of ``--batch``. A share ``--hostile`` of them is
drawn from the hostile kinds below (loops, fork and thread bombs, memory and
output bombs, 1 GiB files, reads of host secrets, network connects, stdin,
non-finite fitness, patching the scorer, exits, attacks on the server and the
scorer, files left for the next candidate, ``kill(-1)``...); the rest are benign
programs whose exact fitness is known. It reports:

* ``hung``: candidates without an answer from their fork server (host backstop hit,
  or the sandbox lost under a candidate that does not explain it);
* ``late``: candidates whose round trip exceeded ``timeout_s + 1 s``;
* ``escapes``: anything that got out: a host secret read, a host file written, a
  connection to the host, a forged byte in a host log, a cheated or contaminated
  fitness, a file or process left for the next candidate (probes look inside);
* ``unexpected``: hostile candidates with a status outside their kind's expected set,
  and benign candidates that did not come back ``ok`` with their exact fitness;
* benign throughput (candidates/s) and CPU per benign candidate of a benign-only
  calibration batch at the start and at the end (the worker must not degrade);
* the end measurement again, interleaved in chunks with a *fresh* worker of the same
  configuration: on a shared machine whose load changes between start and end, this
  is the comparison that measures the worker rather than the load.

Run by hand (~15 min for 10,000 on 2 cores)::

    python benchmarks/soak_sandbox.py [--n 10000] [--hostile 0.25] [--workers 2]

Exits 1 when an acceptance figure fails (hung, escapes or unexpected > 0, or the
soaked worker below 90 % of both its start throughput and a fresh worker's).
``tests/sandbox/test_soak.py`` runs a short one.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from elm.sandbox import EnvironmentSpec, SandboxLimits  # noqa: E402
from elm.types import EvalRequest, EvalStatus  # noqa: E402
from sandbox.corpus import MARKER, Host, Kind, benign, hostile_kinds  # noqa: E402

S = EvalStatus


@dataclass(frozen=True)
class SoakReport:
    candidates: int
    hostile: int
    hung: int
    late: int
    escapes: dict
    unexpected: dict
    benign_bad: int
    throughput_start: float
    throughput_end: float
    cpu_ms_start: float | None
    cpu_ms_end: float | None
    replaced: int
    max_total_s: float
    wall_s: float
    load_start: float
    load_end: float
    by_kind: dict = field(default_factory=dict)
    #: the end measurement repeated side by side with a fresh worker (same config, same load):
    #: (soaked candidates/s, fresh candidates/s), or None when not measured
    control: tuple[float, float] | None = None

    @property
    def throughput_ratio(self) -> float:
        return self.throughput_end / self.throughput_start if self.throughput_start else 0.0

    @property
    def control_ratio(self) -> float | None:
        """Soaked worker's benign throughput over a fresh worker's, measured interleaved at the end."""
        return self.control[0] / self.control[1] if self.control and self.control[1] else None

    @property
    def passed(self) -> bool:
        """0 hung / escapes / unexpected, and the worker did not slow down by more than 10 %.

        "Did not slow down" is end >= 90 % of start; on a shared machine whose load
        changed meanwhile that comparison measures the load, so the interleaved
        comparison with a fresh worker at the end (same load for both) counts too.
        """
        fast = self.throughput_ratio >= 0.9 or (self.control_ratio or 0.0) >= 0.9
        return self.hung == 0 and not self.escapes and not self.unexpected and self.benign_bad == 0 and fast


def _sandbox_cpu(box) -> dict[str, float]:
    """CPU seconds so far of each live sandbox (its host cpuacct cgroup), by sandbox id."""
    out = {}
    for slot in box._slots:
        sid = getattr(slot.handle, "id", None)
        if sid:
            try:
                out[sid] = int(Path(f"/sys/fs/cgroup/cpuacct/{sid}/cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):
                pass
    return out


def _calibrate(box, n: int, start_id: int) -> tuple[float, float | None, int]:
    """(benign candidates/s, sandbox CPU ms per candidate, bad results) of a benign-only batch.

    The CPU figure is None when a sandbox was replaced meanwhile (recycle_after): its
    counter went with it.
    """
    progs = [benign(i) for i in range(n)]
    c0 = _sandbox_cpu(box)
    t0 = time.perf_counter()
    res = box.evaluate([EvalRequest(start_id + i, src) for i, (src, _) in enumerate(progs)])
    wall = time.perf_counter() - t0
    c1 = _sandbox_cpu(box)
    cpu = sum(c1.values()) - sum(c0.values()) if c1.keys() == c0.keys() else None
    bad = sum(1 for r, (_, want) in zip(res, progs) if r.status is not S.OK or r.fitness != want)
    return n / wall, None if cpu is None else cpu / n * 1e3, bad


def _control(box, make_box, n: int, rounds: int = 3) -> tuple[float, float, int]:
    """(soaked, fresh benign candidates/s, bad results): ``n`` each, in ``rounds`` interleaved chunks.

    Interleaved, so that both workers see the same background load.
    """
    fresh = make_box()
    wall = [0.0, 0.0]
    try:
        _, _, bad = _calibrate(fresh, min(n, 20), 30_000_000)  # warm-up: its first candidates pay for imports
        chunk = max(1, n // rounds)
        for r in range(rounds):
            for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                thr, _, b = _calibrate((box, fresh)[k], chunk, 40_000_000 + 1_000_000 * r)
                wall[k] += chunk / thr
                bad += b
    finally:
        fresh.close()
    total = chunk * rounds
    return total / wall[0], total / wall[1], bad


def run_soak(*, n: int = 10_000, hostile: float = 0.25, workers: int = 2, batch: int = 50,
             calibration: int = 300, timeout_s: float = 1.0, seed: int = 0, runtime_dir: str | None = None,
             control: bool = True, log: Callable[[str], None] = print) -> SoakReport:
    """Run the soak and return its figures (see the module docstring)."""
    from sandbox import GVisorSandbox
    from sandbox.gvisor_backend import python_binds

    limits = SandboxLimits(timeout_s=timeout_s, cpu_s=max(2, int(4 * timeout_s)), memory_mb=1024,
                           sandbox_memory_mb=2048)
    rng = random.Random(seed)
    host = Host()
    keep = tuple(os.path.normpath(p) for p in python_binds() if p.startswith(("/tmp/", "/dev/shm/")))
    kinds = hostile_kinds(host, keep)
    weights = [k.weight for k in kinds]

    def make_box():
        return GVisorSandbox(env=EnvironmentSpec("tests.sandbox.toy_env.ToyEnv"), limits=limits, workers=workers,
                             runtime_dir=runtime_dir)

    box = make_box()
    ctl = None
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    escapes: collections.Counter = collections.Counter()
    unexpected: collections.Counter = collections.Counter()
    hung = late = benign_bad = n_hostile = 0
    max_total = 0.0
    generations0 = sum(s.generation for s in box._slots)
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    try:
        thr0, cpu0, bad0 = _calibrate(box, calibration, 10_000_000)
        benign_bad += bad0
        log(f"start: benign throughput {thr0:.1f}/s, {_ms(cpu0)} sandbox CPU per candidate, load {load_start:.1f}")
        done = 0
        while done < n:
            size = min(batch, n - done)
            plan = []
            for i in range(done, done + size):
                if rng.random() < hostile:
                    plan.append(rng.choices(kinds, weights)[0])
                else:
                    plan.append(benign(i))
            reqs = [EvalRequest(done + j, p.source if isinstance(p, Kind) else p[0]) for j, p in enumerate(plan)]
            results = box.evaluate(reqs)
            for p, r in zip(plan, results):
                max_total = max(max_total, r.total_s)
                if r.total_s > timeout_s + 1.0:
                    late += 1
                if r.error and "no answer within the host backstop" in r.error:
                    hung += 1
                if isinstance(p, Kind):
                    n_hostile += 1
                    counts[p.name][str(r.status)] += 1
                    if r.status not in p.statuses:
                        unexpected[f"{p.name}: {r.status}"] += 1
                        if r.status is S.SANDBOX_LOST:
                            hung += 1
                        log(f"  unexpected: candidate {r.id} ({p.name}): {r.status} after {r.total_s:.2f} s: "
                            f"{(r.error or '')[:300]!r}")
                    elif p.escaped(r):
                        escapes[p.name] += 1
                        log(f"  ESCAPE: candidate {r.id} ({p.name}): fitness {r.fitness}, "
                            f"output {r.stdout_tail[-300:]!r}")
                else:
                    counts["benign"][str(r.status)] += 1
                    if r.status is not S.OK or r.fitness != p[1]:
                        benign_bad += 1
                        unexpected[f"benign: {r.status}"] += 1
                        log(f"  benign candidate {r.id}: {r.status} (fitness {r.fitness}, want {p[1]}) after "
                            f"{r.total_s:.2f} s: {(r.error or '')[:300]!r}")
                if r.total_s > timeout_s + 1.0:
                    log(f"  late: candidate {r.id} ({p.name if isinstance(p, Kind) else 'benign'}) "
                        f"took {r.total_s:.2f} s: {r.status}")
            done += size
            if done % 1000 == 0 or done == n:
                changed = host.changed()
                if changed:
                    escapes["host files changed: " + ", ".join(changed)] += 1
                log(f"{done}/{n}: {n_hostile} hostile, hung {hung}, late {late}, escapes {sum(escapes.values())}, "
                    f"unexpected {sum(unexpected.values())}, sandboxes replaced "
                    f"{sum(s.generation for s in box._slots) - generations0}, "
                    f"{time.perf_counter() - t_start:.0f} s, load {os.getloadavg()[0]:.1f}")
        thr1, cpu1, bad1 = _calibrate(box, calibration, 20_000_000)
        benign_bad += bad1
        load_end = os.getloadavg()[0]
        log(f"end: benign throughput {thr1:.1f}/s, {_ms(cpu1)} sandbox CPU per candidate, load {load_end:.1f}")
        if control:
            *ctl, bad2 = _control(box, make_box, calibration)
            benign_bad += bad2
            log(f"end, interleaved with a fresh worker: soaked {ctl[0]:.1f}/s, fresh {ctl[1]:.1f}/s "
                f"({ctl[0] / ctl[1]:.0%}), load {os.getloadavg()[0]:.1f}")
        if host.connections:
            escapes["connections to the host listener"] += host.connections
        for path in Path(box._dir).rglob("*.log"):
            if MARKER in path.read_bytes():
                escapes[f"forged bytes in {path.name}"] += 1
        replaced = sum(s.generation for s in box._slots) - generations0
    finally:
        box.close()
        host.close()
    return SoakReport(
        candidates=n, hostile=n_hostile, hung=hung, late=late, escapes=dict(escapes), unexpected=dict(unexpected),
        benign_bad=benign_bad, throughput_start=thr0, throughput_end=thr1, cpu_ms_start=cpu0, cpu_ms_end=cpu1,
        replaced=replaced, max_total_s=max_total, wall_s=time.perf_counter() - t_start, load_start=load_start,
        load_end=load_end, by_kind={k: dict(v) for k, v in counts.items()},
        control=tuple(ctl) if ctl else None,
    )


def _ms(value: float | None) -> str:
    return "n/a (a sandbox was recycled meanwhile)" if value is None else f"{value:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--hostile", type=float, default=0.25, help="share of hostile candidates")
    ap.add_argument("--workers", type=int, default=2, help="slots of the one worker")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--calibration", type=int, default=300, help="benign candidates per throughput measurement")
    ap.add_argument("--timeout", type=float, default=1.0, help="timeout_s per candidate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rep = run_soak(n=args.n, hostile=args.hostile, workers=args.workers, batch=args.batch,
                   calibration=args.calibration, timeout_s=args.timeout, seed=args.seed)
    print()
    print(f"candidates {rep.candidates}, hostile {rep.hostile} ({rep.hostile / rep.candidates:.1%}), "
          f"wall {rep.wall_s:.0f} s, sandboxes replaced {rep.replaced}")
    print(f"hung {rep.hung}; late (> timeout + 1 s) {rep.late}; max round trip {rep.max_total_s:.2f} s")
    print(f"escapes {sum(rep.escapes.values())} {rep.escapes or ''}")
    print(f"unexpected statuses {sum(rep.unexpected.values())} {rep.unexpected or ''}; benign not ok {rep.benign_bad}")
    print(f"benign throughput start {rep.throughput_start:.1f}/s, end {rep.throughput_end:.1f}/s "
          f"({rep.throughput_ratio:.0%}); sandbox CPU per benign candidate {_ms(rep.cpu_ms_start)} -> "
          f"{_ms(rep.cpu_ms_end)}; 1-min load average {rep.load_start:.1f} -> {rep.load_end:.1f}")
    if rep.control:
        print(f"at the end, interleaved (same load): soaked worker {rep.control[0]:.1f}/s, a fresh worker "
              f"{rep.control[1]:.1f}/s ({rep.control_ratio:.0%})")
    print("statuses by kind:")
    for name, c in sorted(rep.by_kind.items()):
        print(f"  {name:<24}" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print("PASS" if rep.passed else "FAIL")
    return 0 if rep.passed else 1


if __name__ == "__main__":
    sys.exit(main())
