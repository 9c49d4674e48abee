"""The hostile-program corpus: candidates that attack the sandbox, and benign ones with known fitness.

Data shared by ``tests/sandbox/test_soak.py`` (a short soak) and ``benchmarks/soak_sandbox.py``
(the 10,000-candidate one): each :class:`Kind` is a hostile program with the statuses it may get
and a check that says, from its result, whether something got out; :class:`Host` holds the
host-side canaries those checks look at (a secret file, paths a candidate must not create, a
listener it must not reach); :func:`benign` gives programs whose exact fitness is known. The
programs are written for ``tests.sandbox.toy_env.ToyEnv`` (``main()`` returns the fitness).
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elm.types import EvalResult, EvalStatus

__all__ = ["MARKER", "Host", "Kind", "benign", "hostile_kinds"]

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
                             home + "/.bash_history", "/root/.ssh/id_rsa", "/proc/1/root/etc/shadow"]:
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
        Kind("deep nesting", _prog("""
            def main():
                x = []
                for _ in range(200000):
                    x = [x]
                return x
        """), frozenset({S.ERROR, S.INVALID}), weight=1),
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
