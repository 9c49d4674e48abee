"""Per-candidate cost through the sandboxes vs the same program in a plain host subprocess. Asserts nothing.

Three programs (trivial, a numpy 100x100 matmul, ~100 ms of pure-Python CPU)
go through four methods:

* ``host``: ``subprocess.run([python, "-c", program + "print(main())"], capture_output=True)``:
  a fresh interpreter of the same venv per program, no isolation (what a naive evaluator does);
* ``host -S``: the same with ``-S`` and the venv's site-packages on ``PYTHONPATH``: the
  cheapest a fresh interpreter gets. It skips ``site`` and its ``.pth`` hooks; in a dev
  venv with an editable install of this project that hook alone costs ~20 ms per start
  (a regular install has none), so this is the baseline the ratios are computed against;
* ``host harness``: ``python -S`` running the program through the same environment
  (``ToyEnv().execute`` + ``score``, the program on stdin, the evaluation printed): the same
  work as the sandbox, the way a plain subprocess-per-candidate evaluator does it;
* ``process``: :class:`sandbox.ProcessSandbox` (warm fork server on the host, unsafe);
* ``gvisor``: :class:`sandbox.GVisorSandbox` (warm fork server in a gVisor sandbox).

The sandboxes run the program through the environment (``execute`` + ``score``,
``tests.sandbox.toy_env.ToyEnv``, which preloads numpy) and capture its
stdout/stderr; the host methods only run the program and capture its output.

Side by side: the methods are measured interleaved, one evaluation each in a
shuffled order, so that background load (this machine is shared) hits them
alike; ratios are taken within one repeat, and ``--repeat`` runs everything
several times and prints the median of each ratio. Figures:

* ``latency``: one program at a time through one slot, median ms per program;
* ``throughput``: a batch of ``--n`` programs over ``--workers`` slots (host: that many
  subprocesses at once), wall ms per program, batches of the methods interleaved;
* ``CPU``: CPU ms per program summed over every process involved (see :func:`cpu_seconds`).

Run from the repository root, as root for gVisor::

    python benchmarks/bench_sandbox.py [--n 30] [--repeat 3] [--workers 2] [--backends gvisor,process]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import site
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

HOST_METHODS = ("host", "host -S", "host harness")
BASELINE = "host -S"
#: runs the program through the environment, like the sandbox does (program on stdin)
HARNESS = (
    "import json, sys\n"
    "from tests.sandbox.toy_env import ToyEnv\n"
    "env = ToyEnv()\n"
    "ev = env.score(env.execute(sys.stdin.read()))\n"
    "print(json.dumps([ev.fitness, list(ev.descriptor)]))\n"
)


def calibrate_loop(target_s: float = 0.1) -> int:
    """Iterations of the CPU loop that take ~target_s of CPU time in this interpreter (load-independent)."""
    n = 200_000
    while True:
        t0 = time.thread_time()
        s = 0
        for i in range(n):
            s += i * i
        dt = time.thread_time() - t0
        if dt > 0.05:
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


def _proc_cpu(pid: int, *, children: bool) -> float:
    """utime+stime (plus cutime+cstime of reaped children) of ``pid`` from /proc, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = fields[11:15] if children else fields[11:13]
    return sum(int(x) for x in ticks) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(box=None) -> float:
    """CPU time charged so far to running programs the way ``box`` runs them (plus this process).

    host subprocesses: reaped children (RUSAGE_CHILDREN); process backend: each fork server's
    and its zygote's own and reaped children's time plus the persistent scorer's (a scorer
    replaced meanwhile is lost; the spare waiting is not counted yet); gVisor: each sandbox's
    cpuacct cgroup (sentry, gofer, ptrace stubs: everything inside). Robust to background
    load, unlike wall-clock time. Reads backend internals.
    """
    total = time.process_time()
    if box is None:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return total + ru.ru_utime + ru.ru_stime
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
            total += _proc_cpu(slot.proc.pid, children=True)
            # candidates are the zygote's children: their CPU is in its cutime/cstime once reaped
            if slot.info.get("zygote_pid"):
                total += _proc_cpu(slot.info["zygote_pid"], children=True)
            if slot.info.get("scorer_pid"):
                total += _proc_cpu(slot.info["scorer_pid"], children=False)
    return total


class Host:
    """A plain subprocess per program.

    ``no_site``: ``python -S`` with site-packages on PYTHONPATH; ``harness``: also run it
    through the environment (execute + score), as the sandbox does.
    """

    def __init__(self, *, no_site: bool, harness: bool = False) -> None:
        self.no_site = no_site
        self.harness = harness
        self.env = dict(os.environ)
        if no_site:
            self.env["PYTHONPATH"] = os.pathsep.join(site.getsitepackages() + ([REPO] if harness else []))

    def run(self, source: str) -> None:
        cmd = [sys.executable] + (["-S"] if self.no_site else [])
        if self.harness:
            out = subprocess.run(cmd + ["-c", HARNESS], input=source.encode(), capture_output=True, env=self.env)
        else:
            out = subprocess.run(cmd + ["-c", source + "\nprint(main())\n"], capture_output=True, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(f"host program failed: {out.stderr.decode()[-500:]}")


def _check(results) -> None:
    bad = [r for r in results if r.status is not EvalStatus.OK]
    if bad:
        raise RuntimeError(f"benchmark program failed: {bad[0].status} {bad[0].error}")


def measure(methods: dict, progs: dict[str, str], n: int, workers: int) -> dict:
    """{program: {method: (latency ms, throughput ms, CPU ms, run_s ms, score_s ms)}}, interleaved."""
    out: dict[str, dict[str, tuple]] = {}
    for name, src in progs.items():
        lat: dict[str, list[float]] = {m: [] for m in methods}
        cpu = {m: 0.0 for m in methods}
        inner: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
        order = list(methods)
        for one, _ in methods.values():  # warm-up
            one.run(src) if isinstance(one, Host) else _check(one.evaluate([EvalRequest(0, src)]))
        for i in range(n):
            random.shuffle(order)
            for m in order:
                one, _ = methods[m]
                box = None if isinstance(one, Host) else one
                c0 = cpu_seconds(box)
                t0 = time.perf_counter()
                if box is None:
                    one.run(src)
                else:
                    res = one.evaluate([EvalRequest(i, src)])
                lat[m].append(time.perf_counter() - t0)
                cpu[m] += cpu_seconds(box) - c0
                if box is not None:
                    _check(res)
                    inner[m].append((res[0].run_s, res[0].score_s))
        thr: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(3):
            random.shuffle(order)
            for m in order:
                _, many = methods[m]
                t0 = time.perf_counter()
                if isinstance(many, Host):
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(lambda _: many.run(src), range(n)))  # noqa: B023 (called here)
                else:
                    _check(many.evaluate([EvalRequest(i, src) for i in range(n)]))
                thr[m].append((time.perf_counter() - t0) / n)
        out[name] = {
            m: (statistics.median(lat[m]) * 1e3, statistics.median(thr[m]) * 1e3, cpu[m] / n * 1e3,
                statistics.median(r for r, _ in inner[m]) * 1e3 if inner[m] else 0.0,
                statistics.median(s for _, s in inner[m]) * 1e3 if inner[m] else 0.0)
            for m in methods
        }
    return out


def print_tables(rows: dict, methods: list[str], title: str) -> None:
    print(title)
    for col, label in ((0, "latency: median ms per program, one at a time"),
                       (1, "throughput: wall ms per program, batches over the slots"),
                       (2, "CPU: ms per program, all processes involved")):
        print(f"  {label} (ratio to {BASELINE})")
        print("  " + f"{'program':<13}" + "".join(f"{m:>19}" for m in methods))
        for name, r in rows.items():
            base = r[BASELINE][col]
            print("  " + f"{name:<13}" + "".join(f"{r[m][col]:>10.1f} ({r[m][col] / base:4.2f}x)" for m in methods))
    inside = [m for m in methods if m not in HOST_METHODS]
    if inside:
        print("  inside the sandbox: median run_s / score_s (ms)")
        for name, r in rows.items():
            print("  " + f"{name:<13}" + "   ".join(f"{m}: {r[m][3]:.1f} / {r[m][4]:.1f}" for m in inside))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="programs per measurement (and batch size)")
    ap.add_argument("--repeat", type=int, default=3, help="measure everything this many times")
    ap.add_argument("--workers", type=int, default=2, help="slots / parallel host subprocesses")
    ap.add_argument("--backends", default="gvisor,process")
    args = ap.parse_args()

    from sandbox import make_sandbox

    env = EnvironmentSpec("tests.sandbox.toy_env.ToyEnv")
    limits = SandboxLimits(timeout_s=30.0, cpu_s=60)
    loop_n = calibrate_loop()
    progs = programs(loop_n)
    print(f"python {sys.version.split()[0]} at {sys.executable}; {os.cpu_count()} CPUs; n={args.n} per cell; "
          f"workers={args.workers}; CPU loop {loop_n} iterations (~100 ms of CPU here)")

    methods: dict[str, tuple] = {"host": (Host(no_site=False),) * 2, "host -S": (Host(no_site=True),) * 2,
                                 "host harness": (Host(no_site=True, harness=True),) * 2}
    boxes = []
    try:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            try:
                t0 = time.perf_counter()
                one = make_sandbox(backend, env=env, limits=limits, workers=1)
                startup = (time.perf_counter() - t0) * 1e3
                boxes.append(one)
                many = make_sandbox(backend, env=env, limits=limits, workers=args.workers)
                boxes.append(many)
            except Exception as exc:  # noqa: BLE001 - e.g. runsc missing: report and go on
                print(f"{backend}: unavailable ({exc})")
                continue
            print(f"{backend}: start-up of a 1-slot sandbox {startup:.0f} ms")
            methods[backend] = (one, many)
        names = list(methods)
        runs = []
        for rep in range(args.repeat):
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            rows = measure(methods, progs, args.n, args.workers)
            load1 = os.getloadavg()[0]
            runs.append(rows)
            print()
            print_tables(rows, names, f"repeat {rep + 1}/{args.repeat} ({time.perf_counter() - t0:.0f} s; "
                                      f"1-min load average {load0:.1f} at start, {load1:.1f} at end)")
        for base in (BASELINE, "host harness"):
            print()
            print(f"median over {args.repeat} repeat(s) of each ratio to {base} (latency / throughput / CPU):")
            print(f"  {'program':<13}" + "".join(f"{m:>22}" for m in names))
            for name in progs:
                cells = []
                for m in names:
                    ratios = [statistics.median(r[name][m][c] / r[name][base][c] for r in runs) for c in range(3)]
                    cells.append(" / ".join(f"{x:.2f}" for x in ratios))
                print(f"  {name:<13}" + "".join(f"{c:>22}" for c in cells))
    finally:
        for box in boxes:
            t0 = time.perf_counter()
            box.close()
        if boxes:
            print(f"\nclose of the last sandbox: {(time.perf_counter() - t0) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
