"""Per-candidate cost of the sandboxes vs a plain host subprocess. Prints numbers, asserts nothing.

For three programs (trivial, numpy, ~100 ms of pure-Python CPU) it measures:

* ``host subprocess``: ``subprocess.run([sys.executable, "-c", program])`` on the host,
  no isolation, a fresh interpreter per program (what a naive evaluator does);
* ``process``: :class:`sandbox.ProcessSandbox` (warm fork server on the host);
* ``gvisor``: :class:`sandbox.GVisorSandbox` (warm fork server in a gVisor sandbox).

``latency`` is one program at a time through one slot (median ms per program);
``throughput`` is a batch spread over ``--workers`` slots (host: that many
subprocesses at once), reported as wall ms per program; ``CPU`` is CPU time per
program summed over every process involved (robust to background load). Run from the repository
root (it uses the test environment ``tests.sandbox.toy_env.ToyEnv``, which
preloads numpy)::

    python benchmarks/bench_sandbox.py [--n 30] [--workers 2] [--backends gvisor,process]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from elm.sandbox import EnvironmentSpec, SandboxLimits  # noqa: E402
from elm.types import EvalRequest, EvalStatus  # noqa: E402


def calibrate_loop(target_s: float = 0.1) -> int:
    """Iterations of the CPU loop that take ~target_s in this host interpreter."""
    n = 200_000
    while True:
        t0 = time.perf_counter()
        s = 0
        for i in range(n):
            s += i * i
        dt = time.perf_counter() - t0
        if dt > 0.02:
            return int(n * target_s / dt)
        n *= 4


def programs(loop_n: int) -> dict[str, str]:
    return {
        "trivial": "def main():\n    return 1.0\n",
        "numpy": (
            "import numpy as np\n"
            "def main():\n"
            "    a = np.random.default_rng(0).random((100, 100))\n"
            "    return float(np.trace(a @ a))\n"
        ),
        "cpu ~100 ms": (
            "def main():\n"
            "    s = 0\n"
            f"    for i in range({loop_n}):\n"
            "        s += i * i\n"
            "    return float(s % 7)\n"
        ),
    }


def cpu_seconds(box=None) -> float:
    """CPU time charged so far to running programs the way ``box`` runs them (plus this process).

    host subprocesses: reaped children (RUSAGE_CHILDREN); process backend: each fork server's
    utime+stime+cutime+cstime from /proc; gVisor: each sandbox's cpuacct cgroup (sentry, gofer,
    stubs). Robust to background load, unlike wall-clock time. Reads backend internals.
    """
    total = time.process_time()
    if box is None:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return total + ru.ru_utime + ru.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for slot in box._slots:
        if box.backend == "gvisor" and slot.handle is not None:
            for path in (f"/sys/fs/cgroup/cpuacct/{slot.handle.id}/cpuacct.usage",
                         f"/sys/fs/cgroup/{slot.handle.id}/cpu.stat"):
                try:
                    with open(path) as f:
                        text = f.read()
                except OSError:
                    continue
                if path.endswith("cpuacct.usage"):
                    total += int(text) / 1e9
                else:
                    total += int(text.split("usage_usec", 1)[1].split()[0]) / 1e6
                break
        elif box.backend == "process" and slot.proc is not None:
            try:
                with open(f"/proc/{slot.proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15]) / tick
            except (OSError, ValueError):
                pass
    return total


def host_cmd(source: str) -> list[str]:
    return [sys.executable, "-c", source + "\nprint(main())\n"]


def bench_host(source: str, n: int, workers: int) -> tuple[float, float, float]:
    lat = []
    c0 = cpu_seconds()
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(host_cmd(source), capture_output=True, check=True)
        lat.append(time.perf_counter() - t0)
    cpu = (cpu_seconds() - c0) / n * 1e3
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: subprocess.run(host_cmd(source), capture_output=True, check=True), range(n)))
    return statistics.median(lat) * 1e3, (time.perf_counter() - t0) / n * 1e3, cpu


def bench_sandbox(box, source: str, n: int) -> tuple[float, float, float, float, float]:
    box.evaluate([EvalRequest(0, source)])  # warm-up
    lat, run, score = [], [], []
    c0 = cpu_seconds(box)
    for i in range(n):
        t0 = time.perf_counter()
        (res,) = box.evaluate([EvalRequest(i, source)])
        lat.append(time.perf_counter() - t0)
        if res.status is not EvalStatus.OK:
            raise RuntimeError(f"benchmark program failed: {res.status} {res.error}")
        run.append(res.run_s)
        score.append(res.score_s)
    cpu = (cpu_seconds(box) - c0) / n * 1e3
    t0 = time.perf_counter()
    results = box.evaluate([EvalRequest(i, source) for i in range(n)])
    thr = (time.perf_counter() - t0) / n * 1e3
    bad = [r for r in results if r.status is not EvalStatus.OK]
    if bad:
        raise RuntimeError(f"benchmark batch had failures: {bad[0].status} {bad[0].error}")
    return statistics.median(lat) * 1e3, thr, statistics.median(run) * 1e3, statistics.median(score) * 1e3, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="programs per measurement")
    ap.add_argument("--workers", type=int, default=2, help="slots / parallel host subprocesses")
    ap.add_argument("--backends", default="gvisor,process")
    args = ap.parse_args()

    from sandbox import make_sandbox

    env = EnvironmentSpec("tests.sandbox.toy_env.ToyEnv")
    limits = SandboxLimits(timeout_s=30.0, cpu_s=60)
    loop_n = calibrate_loop()
    progs = programs(loop_n)
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPUs; "
          f"n={args.n} per cell; workers={args.workers}; CPU loop {loop_n} iterations")

    rows: dict[str, dict[str, tuple]] = {name: {} for name in progs}
    for name, src in progs.items():
        rows[name]["host"] = bench_host(src, args.n, args.workers)
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            t0 = time.perf_counter()
            one = make_sandbox(backend, env=env, limits=limits, workers=1)
            startup = (time.perf_counter() - t0) * 1e3
            many = make_sandbox(backend, env=env, limits=limits, workers=args.workers)
        except Exception as exc:  # noqa: BLE001 - e.g. runsc missing: report and go on
            print(f"{backend}: unavailable ({exc})")
            continue
        try:
            for name, src in progs.items():
                lat, _, run, score, cpu = bench_sandbox(one, src, args.n)
                _, thr, _, _, _ = bench_sandbox(many, src, args.n)
                rows[name][backend] = (lat, thr, run, score, cpu)
        finally:
            t0 = time.perf_counter()
            one.close()
            close = (time.perf_counter() - t0) * 1e3
            many.close()
        print(f"{backend}: start-up of a 1-slot sandbox {startup:.0f} ms, close {close:.0f} ms")

    backends = [b for b in ("process", "gvisor") if any(b in r for r in rows.values())]
    print()
    print("latency: median ms per program, one at a time (ratio to host subprocess)")
    header = f"{'program':<14}{'host subprocess':>17}" + "".join(f"{b:>22}" for b in backends)
    print(header)
    for name, r in rows.items():
        h = r["host"][0]
        cells = "".join(f"{r[b][0]:>12.1f} ({r[b][0] / h:4.2f}x)" for b in backends if b in r)
        print(f"{name:<14}{h:>17.1f}{cells}")
    print()
    print(f"throughput: wall ms per program, batch of {args.n} over {args.workers} slots / processes")
    print(header)
    for name, r in rows.items():
        h = r["host"][1]
        cells = "".join(f"{r[b][1]:>12.1f} ({r[b][1] / h:4.2f}x)" for b in backends if b in r)
        print(f"{name:<14}{h:>17.1f}{cells}")
    print()
    print("CPU: ms of CPU time per program (all processes involved, see cpu_seconds)")
    print(header)
    for name, r in rows.items():
        h = r["host"][2]
        cells = "".join(f"{r[b][4]:>12.1f} ({r[b][4] / h:4.2f}x)" for b in backends if b in r)
        print(f"{name:<14}{h:>17.1f}{cells}")
    print()
    print("inside the sandbox: median run_s / score_s per program (ms)")
    for name, r in rows.items():
        cells = "   ".join(f"{b}: {r[b][2]:.1f} / {r[b][3]:.1f}" for b in backends if b in r)
        print(f"{name:<14}{cells}")


if __name__ == "__main__":
    main()
