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
* ``mismatches``: determinism witnesses (fixed programs that draw from every seeded random
  source, hash strings and observe every kind of state the inventory in docs/sandbox.md
  lists: SysV IPC, message queues, loopback ports, environment, fds, umask, hostname, /tmp)
  are evaluated in every batch, in random positions among the hostile candidates; every
  result of one witness must be bit-identical to its first (goal: 0 over 10,000 candidates);
* benign throughput (candidates/s) and CPU per benign candidate of a benign-only
  calibration batch at the start and at the end (the worker must not degrade);
* the end measurement again, interleaved in chunks with a *fresh* worker of the same
  configuration: on a shared machine whose load changes between start and end, this
  is the comparison that measures the worker rather than the load.

The harness and its hostile-program corpus live here, in the package, so that the test suite
(``tests/sandbox/test_soak.py``, a short soak) and the benchmark (``benchmarks/soak_sandbox.py``,
run by hand: ~15 min for 10,000 candidates on 2 cores) share them without importing each other.

Exits 1 when an acceptance figure fails (hung, escapes, unexpected or mismatches > 0, or the
soaked worker below 90 % of both its start throughput and a fresh worker's).
``tests/sandbox/test_soak.py`` runs a short one.
"""

from __future__ import annotations

import collections
import os
import random
import secrets
import socket
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from elm.sandbox import EnvironmentSpec, SandboxLimits
from elm.types import EvalRequest, EvalResult, EvalStatus

#: host paths a candidate must not create include one in the checkout (or the installed tree)
REPO = Path(__file__).resolve().parents[1]

S = EvalStatus
MARKER = b"ELM-SOAK-FORGED"


def _prog(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


@dataclass(frozen=True)
class Kind:
    """One kind of hostile candidate: its source, the statuses it may get, and its escape check."""

    name: str
    source: str
    statuses: frozenset
    weight: float = 1.0
    #: True when the result shows that something got out (given the result)
    escaped: Callable[[EvalResult], bool] = lambda r: False


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
    #: determinism witnesses evaluated, and those whose result differed from the witness's first
    witnessed: int = 0
    mismatches: int = 0

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
        return (self.hung == 0 and not self.escapes and not self.unexpected and self.benign_bad == 0
                and self.mismatches == 0 and fast)


class Host:
    """Host-side canaries: a secret file, paths a candidate must not create, a listener it must not reach."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="elm-soak-")
        self.secret = secrets.token_hex(16)
        self.secret_path = os.path.join(self.dir, "secret.txt")
        Path(self.secret_path).write_text(self.secret)
        os.chmod(self.dir, 0o755)
        os.chmod(self.secret_path, 0o644)  # readable by anyone on the host: only isolation protects it
        tag = secrets.token_hex(4)
        self.forbidden = [os.path.join(self.dir, "written.bin"), f"/tmp/elm-soak-{tag}.bin",
                          str(REPO / f"elm-soak-{tag}.bin")]
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def changed(self) -> list[str]:
        out = [p for p in self.forbidden if os.path.exists(p)]
        if Path(self.secret_path).read_text() != self.secret:
            out.append(self.secret_path)
        if sorted(os.listdir(self.dir)) != ["secret.txt"]:
            out.append(self.dir)
        return out

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.listener.close()
        for p in self.forbidden:
            try:
                os.unlink(p)
            except OSError:
                pass
        for p in (self.secret_path,):
            os.unlink(p)
        os.rmdir(self.dir)


PROBE = _prog("""
    import os
    def main():
        # live processes of the candidate uid besides this one, and files left in the scratch dirs
        me, mine = os.getpid(), 0
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == me:
                continue
            try:
                with open(f"/proc/{p}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if fields["State"].split()[0] not in ("Z", "X") and int(fields["Uid"].split()[0]) == os.getuid():
                mine += 1
        # everything in the scratch dirs except mount points and the binds (KEEP), looking inside
        # the directories on the way to a bind (e.g. /tmp/<project> for a venv at /tmp/<project>/.venv)
        keep, files, todo = KEEP, [], ["/tmp", "/dev/shm"]
        while todo:
            d = todo.pop()
            if not os.path.isdir(d):
                continue
            for n in os.listdir(d):
                path = os.path.join(d, n)
                if path in keep or os.path.ismount(path):
                    continue
                if any(k.startswith(path + "/") for k in keep):
                    todo.append(path)
                else:
                    files.append(path)
        print(files)
        return mine * 1000 + len(files)
""")


#: fixed programs whose results must never change (see ``mismatches``): fingerprints, in ToyEnv's
#: fitness, of what they draw and observe
_FINGERPRINT = """
import json, zlib
def fingerprint(value):
    return float(zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode()))
"""
WITNESSES = {
    "seeded randomness": _prog(_FINGERPRINT + """
import random
import numpy as np
def main():
    return fingerprint([random.random(), random.getrandbits(64), np.random.random(8).tolist(),
                        int(np.random.randint(0, 1 << 30))])
"""),
    "string hashing": _prog(_FINGERPRINT + """
def main():
    return fingerprint([list({f"k{i}" for i in range(64)}), hash("elm") % 1000003])
"""),
    "state observer": _prog(_FINGERPRINT + """
import ctypes, os, resource, socket
def main():
    libc = ctypes.CDLL(None, use_errno=True)
    ipc = [libc.semget(0xC0DE, 1, 0) >= 0, libc.shmget(0xC0DF, 0, 0) >= 0, libc.msgget(0xC0E0, 0) >= 0]
    mq = libc.mq_open(b"/elm-soak", os.O_RDWR)
    port = socket.socket()
    try:
        port.bind(("127.0.0.1", 47124))
        busy = False
    except OSError:
        busy = True
    fds = []
    for fd in range(256):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            pass
    mask = os.umask(0o022)
    return fingerprint([ipc, mq >= 0, busy, fds, mask, sorted(os.environ.items()), socket.gethostname(),
                        resource.getrlimit(resource.RLIMIT_NOFILE), os.getcwd(), sorted(os.listdir("/tmp"))])
"""),
    "numpy arithmetic": _prog("""
import numpy as np
def main():
    a = np.linspace(0.0, 1.0, 257)
    return float(np.sin(a) @ np.cos(a[::-1]) + np.linalg.norm(np.outer(a, a)))
"""),
}


def hostile_kinds(host: Host, keep_paths: tuple[str, ...]) -> list[Kind]:
    loop = "    while True:\n        pass\n"
    probe = PROBE.replace("KEEP", repr(keep_paths))
    return [
        Kind("infinite loop", _prog("def main():\n" + loop), frozenset({S.TIMEOUT})),
        Kind("setsid + loop", _prog("""
            import os
            def main():
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        while True:
                            pass
                    os._exit(0)
                while True:
                    pass
        """), frozenset({S.TIMEOUT})),
        Kind("ignores SIGTERM", _prog("""
            import signal
            def main():
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
                    signal.signal(sig, signal.SIG_IGN)
                while True:
                    pass
        """), frozenset({S.TIMEOUT})),
        Kind("fork bomb", _prog("""
            import os
            def main():
                while True:
                    try:
                        os.fork()
                    except OSError:
                        pass
        """), frozenset({S.ERROR, S.TIMEOUT}), weight=0.5),  # too slow to reach its cap: deadline
        Kind("thread bomb", _prog("""
            import threading
            def spin():
                while True:
                    pass
            def main():
                while True:
                    threading.Thread(target=spin, daemon=True).start()
        """), frozenset({S.TIMEOUT, S.ERROR}), weight=0.5),
        Kind("4 GiB bytearray", _prog("def main():\n    return len(bytearray(4 << 30))\n"),
             frozenset({S.MEMORY}), weight=2),
        Kind("4 GiB numpy", _prog("""
            import numpy as np
            def main():
                return float(np.ones((1 << 29,)).sum())
        """), frozenset({S.MEMORY}), weight=2),
        Kind("100 MB of stdout", _prog("""
            import sys
            def main():
                chunk = "spam" * (1 << 18)
                for _ in range(100):
                    sys.stdout.write(chunk)
                return 1
        """), frozenset({S.OUTPUT_LIMIT}), weight=2),
        # Past the 64 MiB result cap; on a loaded machine serialising it can outlast a 1 s deadline.
        Kind("100 MB result", _prog("def main():\n    return 'x' * (100 << 20)\n"),
             frozenset({S.OUTPUT_LIMIT, S.TIMEOUT}), weight=2),
        Kind("1 GiB file", _prog(f"""
            def main():
                chunk = b"x" * (1 << 20)
                for path in ["big.bin", "/tmp/big.bin"] + {host.forbidden!r}:
                    try:
                        with open(path, "wb") as f:
                            for _ in range(1024):
                                f.write(chunk)
                    except OSError:
                        pass
                raise OSError("no room for 1 GiB")
        """), frozenset({S.ERROR, S.TIMEOUT}), weight=2),  # a slow tmpfs on a loaded machine: deadline
        Kind("reads host files", _prog(f"""
            import os
            def main():
                got = 0
                home = os.path.expanduser("~")
                for path in [{host.secret_path!r}, "/etc/shadow", {str(REPO / "pyproject.toml")!r},
                             home + "/.bash_history",
                             "/root/.ssh/id_rsa", "/proc/1/root/etc/shadow"]:
                    try:
                        with open(path, "rb") as f:
                            data = f.read()
                        print(data[:200])
                        got += len(data)
                    except OSError:
                        pass
                return got
        """), frozenset({S.OK}), weight=2,
             escaped=lambda r: r.fitness != 0 or host.secret in r.stdout_tail),
        Kind("network", _prog(f"""
            import socket
            def main():
                reached = 0
                for addr in [("127.0.0.1", {host.port}), ("1.1.1.1", 80), ("8.8.8.8", 53)]:
                    try:
                        socket.create_connection(addr, timeout=0.2).close()
                        reached += 1
                    except OSError:
                        pass
                try:
                    socket.getaddrinfo("pypi.org", 443)
                    reached += 1
                except OSError:
                    pass
                return reached
        """), frozenset({S.OK}), weight=2, escaped=lambda r: r.fitness != 0),
        Kind("reads stdin", _prog("""
            import os, sys
            def main():
                return len(sys.stdin.read()) + len(os.read(0, 1 << 16))
        """), frozenset({S.OK}), weight=2, escaped=lambda r: r.fitness != 0),
        Kind("NaN fitness", _prog("def main():\n    return float('nan')\n"), frozenset({S.INVALID}), weight=2),
        Kind("inf fitness", _prog("def main():\n    return float('-inf')\n"), frozenset({S.INVALID}), weight=2),
        Kind("score() raises", _prog("def main():\n    return 'not a number'\n"), frozenset({S.INVALID}), weight=2),
        Kind("patches the scoring", _prog("""
            import gc, sys
            import elm.environment as E
            from elm.types import Evaluation
            import tests.sandbox.toy_env as toy
            def fake(self, output):
                return Evaluation(fitness=1e9, descriptor=(0.5,), info={"cheated": True})
            toy.ToyEnv.score = fake
            E.validate_evaluation = lambda ev, space: ev
            for obj in gc.get_objects():
                if isinstance(obj, toy.ToyEnv):
                    obj.score = fake.__get__(obj)
            for mod in list(sys.modules.values()):
                if hasattr(mod, "Server"):
                    mod.Server._score = lambda self, payload: {"kind": "ok", "fitness": 1e9, "descriptor": [0.5]}
            def main():
                return 1.0
        """), frozenset({S.OK}), weight=2, escaped=lambda r: r.fitness != 1.0 or "cheated" in r.info),
        Kind("sys.exit", _prog("import sys\ndef main():\n    sys.exit(3)\n"), frozenset({S.ERROR}), weight=1),
        Kind("os._exit", _prog("import os\ndef main():\n    os._exit(0)\n"), frozenset({S.ERROR}), weight=1),
        Kind("kill(-1)", _prog("import os, signal\ndef main():\n    os.kill(-1, signal.SIGKILL)\n"),
             frozenset({S.ERROR}), weight=1),
        Kind("attacks server/scorer", _prog(f"""
            import ctypes, os, signal
            def main():
                libc = ctypes.CDLL(None, use_errno=True)
                me, hits = os.getpid(), 0
                for p in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]:
                    try:  # what it is, printed for the log if anything is hit
                        with open(f"/proc/{{p}}/status") as f:
                            what = " ".join(l.split(":", 1)[1].split()[0] for l in f
                                            if l.startswith(("Name", "State", "PPid", "Uid")))
                    except (OSError, IndexError):
                        what = "?"
                    for sig in (signal.SIGSTOP, signal.SIGKILL):
                        try:
                            os.kill(p, sig)
                            hits += 1
                            print("signalled", p, what, sig)
                        except OSError:
                            pass
                    if libc.ptrace(16, p, 0, 0) == 0:
                        hits += 1
                        print("ptraced", p, what)
                    try:
                        fds = os.listdir(f"/proc/{{p}}/fd")
                    except OSError:
                        fds = []
                    for fd in fds:
                        try:
                            f = os.open(f"/proc/{{p}}/fd/{{fd}}", os.O_RDONLY | os.O_NONBLOCK)
                            try:
                                got = os.read(f, 1 << 16)
                                # A file this candidate may open by its own path anyway is no escalation:
                                # the server's pids.current (the candidate's own task count, which it
                                # reads every 20 ms) is, and was the only "hit" in the first soaks.
                                target = os.readlink(f"/proc/{{p}}/fd/{{fd}}")
                                if got and not (target.startswith("/") and os.access(target, os.R_OK)):
                                    hits += len(got)
                                    print("read", p, what, fd, target, got[:40])
                            except OSError:
                                pass
                            os.close(f)
                        except OSError:
                            pass
                        try:
                            f = os.open(f"/proc/{{p}}/fd/{{fd}}", os.O_WRONLY | os.O_NONBLOCK)
                            try:
                                os.write(f, {MARKER!r})
                            except OSError:
                                pass
                            os.close(f)
                        except OSError:
                            pass
                return hits
        """), frozenset({S.OK}), weight=2, escaped=lambda r: r.fitness != 0),
        Kind("leaves files", _prog("""
            import os
            def main():
                todo = ["/tmp", "/dev/shm"]
                for d in todo:  # the scratch dirs and every writable directory on the way to a bind
                    try:
                        todo += [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)
                                 and not os.path.ismount(e.path) and os.access(e.path, os.W_OK)]
                    except OSError:
                        pass
                    if os.access(d, os.W_OK):
                        os.makedirs(d + "/left/behind", exist_ok=True)
                        with open(d + "/left/behind/note", "w") as f:
                            f.write("for the next candidate")
                        with open(d + "/.hidden", "w") as f:
                            f.write("x")
                return 1
        """), frozenset({S.OK}), weight=2),
        Kind("leaves a process", _prog("""
            import os, time
            def main():
                if os.fork() == 0:
                    os.setsid()
                    while True:
                        time.sleep(0.01)
                return 1
        """), frozenset({S.OK}), weight=2),
        Kind("probe", probe, frozenset({S.OK}), weight=3, escaped=lambda r: r.fitness != 0),
        Kind("plants IPC and a busy port", _prog("""
            import ctypes, os, socket
            def main():
                libc = ctypes.CDLL(None, use_errno=True)
                libc.semget(0xC0DE, 1, 0o1000 | 0o666)
                libc.shmget(0xC0DF, 1 << 20, 0o1000 | 0o666)
                libc.msgget(0xC0E0, 0o1000 | 0o666)
                libc.mq_open(b"/elm-soak", os.O_CREAT | os.O_RDWR, 0o666, None)
                listener = socket.socket()
                listener.bind(("127.0.0.1", 47124))
                listener.listen()
                client = socket.create_connection(("127.0.0.1", 47124))
                conn, _ = listener.accept()
                conn.close()  # TIME_WAIT on the port for a minute
                return 1
        """), frozenset({S.OK}), weight=2),
        Kind("plants process state", _prog("""
            import os, random, resource, socket
            import numpy as np
            def main():
                os.environ["ELM_PLANTED"] = "1"
                os.umask(0)
                for fd in (os.open("/dev/null", os.O_RDONLY), socket.socket().detach()):
                    os.set_inheritable(fd, True)
                    os.dup2(fd, 40 + fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
                random.seed(1)
                np.random.seed(1)
                if os.fork() == 0:
                    os.setsid()
                    while True:
                        random.random()
                return 1
        """), frozenset({S.OK}), weight=2),
        # building and serialising 200,000 levels is quick on an idle core; at load 45 a few passed the
        # 1 s deadline and were stopped there, as safe an outcome as the RecursionError it normally meets
        Kind("deep nesting", _prog("""
            def main():
                x = []
                for _ in range(200000):
                    x = [x]
                return x
        """), frozenset({S.ERROR, S.INVALID, S.TIMEOUT}), weight=1),
    ]


def benign(i: int) -> tuple[str, float]:
    """A benign program and its exact fitness (ToyEnv: fitness = returned number)."""
    k = 50 + i % 200
    kind = i % 3
    if kind == 0:
        return f"def main():\n    return {k + 0.25}\n", k + 0.25
    if kind == 1:
        return (f"import numpy as np\ndef main():\n    a = np.arange({k}, dtype=np.float64)\n"
                f"    return float((a @ a) % 1000) + 0.5\n"), float(sum(j * j for j in range(k)) % 1000) + 0.5
    n = 20_000 + 10 * k
    return (f"def main():\n    s = 0\n    for j in range({n}):\n        s += j * j\n    return float(s % 997)\n",
            float(sum(j * j for j in range(n)) % 997))


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
    hung = late = benign_bad = n_hostile = witnessed = mismatches = 0
    first_seen: dict[str, tuple] = {}
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
            for name in WITNESSES:  # determinism witnesses at random positions among the candidates
                plan.insert(rng.randrange(len(plan) + 1), name)
            reqs = [EvalRequest(done + j, WITNESSES[p] if isinstance(p, str) else p.source if isinstance(p, Kind)
                                else p[0], seed=seed) for j, p in enumerate(plan)]
            results = box.evaluate(reqs)
            for p, r in zip(plan, results):
                if isinstance(p, str):
                    witnessed += 1
                    outcome = (r.status, r.fitness, r.descriptor, r.error)
                    if first_seen.setdefault(p, outcome) != outcome:
                        mismatches += 1
                        log(f"  MISMATCH: witness {p!r} (candidate {r.id}) got {outcome}, first {first_seen[p]}")
                    continue
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
                    f"determinism mismatches {mismatches}/{witnessed}, "
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
        control=tuple(ctl) if ctl else None, witnessed=witnessed, mismatches=mismatches,
    )


def _ms(value: float | None) -> str:
    return "n/a (a sandbox was recycled meanwhile)" if value is None else f"{value:.1f} ms"
