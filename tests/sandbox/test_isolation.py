"""Nothing passes from one candidate to the next: the inventory of docs/sandbox.md, one test per row.

Each row has ``plant()`` (what candidate A leaves behind) and ``observe()`` (what
any candidate can see of it, as JSON-able data). One slot runs, in this order:
a probe (B before), the planter (A, which reports what *it* observes after
planting), and the probe again (B after). B after must observe exactly what B
before did. Where the inventory says a candidate can create the state, A's own
observation must differ, so the probe is shown to see the state when it is there.

Rows that would change the host itself (keyrings, cgroup files, sysctls) run
only under gVisor; rows that rely on per-candidate namespaces run on the
process backend only when it has them (root).
"""

from __future__ import annotations

import dataclasses

import pytest

from elm.types import EvalRequest, EvalStatus

from .conftest import BACKENDS, LIMITS, make, prog

#: what a probe may take (a timer row sleeps ~0.3 s)
ISOLATION_LIMITS = dataclasses.replace(LIMITS, timeout_s=3.0)

# Shared by every program: observations are printed (for the failure message) and fingerprinted
# into the toy environment's fitness, a number.
_COMMON = prog("""
    import ctypes, errno, fcntl, json, os, signal, socket, sys, time, zlib
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def fingerprint(value):
        text = json.dumps(value, sort_keys=True, default=str)
        print(text)
        return float(zlib.crc32(text.encode()))
    def detached_child(hold_s=30.0):
        # a process left behind (the clean-up kills it: what it holds must go with it)
        if os.fork() == 0:
            os.setsid()
            time.sleep(hold_s)
            os._exit(0)
""")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    plant: str  # body of plant()
    observe: str  # body of observe()
    #: backend -> whether a candidate can create this state there (None: not asserted)
    creatable: dict
    #: False: never run on the process backend (it would change the host itself)
    host_safe: bool = True
    #: True: isolated on the process backend only with per-candidate namespaces (root)
    needs_namespaces: bool = False


def _fn(name: str, body: str) -> str:
    return f"def {name}():\n" + "".join(f"    {line}\n" for line in prog(body).splitlines())


ROWS = [
    Row("sysv-ipc", plant="""
        libc.semget(0xC0DE, 1, 0o1000 | 0o666)
        libc.shmget(0xC0DF, 1 << 20, 0o1000 | 0o666)
        libc.msgget(0xC0E0, 0o1000 | 0o666)
    """, observe="""
        return [libc.semget(0xC0DE, 1, 0) >= 0, libc.shmget(0xC0DF, 0, 0) >= 0, libc.msgget(0xC0E0, 0) >= 0]
    """, creatable={"gvisor": True, "process": True}, needs_namespaces=True),
    Row("posix-mqueue", plant="""
        libc.mq_open(b"/elm-planted", os.O_CREAT | os.O_RDWR, 0o666, None)
    """, observe="""
        fd = libc.mq_open(b"/elm-planted", os.O_RDWR)
        if fd >= 0:
            libc.mq_close(fd)
        return fd >= 0
    """, creatable={"gvisor": True, "process": True}, needs_namespaces=True),
    Row("abstract-unix-socket", plant="""
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(b"\\0elm-planted")
            s.listen()
        except OSError:
            return
        s.set_inheritable(True)
        detached_child()
    """, observe="""
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(b"\\0elm-planted")
            return True
        except OSError:
            return False
    """, creatable={"gvisor": False, "process": True}, needs_namespaces=True),
    Row("loopback-port-time-wait", plant="""
        l = socket.socket()
        l.bind(("127.0.0.1", 47123))
        l.listen()
        c = socket.create_connection(("127.0.0.1", 47123))
        a, _ = l.accept()
        a.close()  # the side that closes first keeps the port in TIME_WAIT for a minute
        l.close()
    """, observe="""
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 47123))
            return False
        except OSError:
            return True
    """, creatable={"gvisor": True, "process": True}, needs_namespaces=True),
    Row("file-locks", plant="""
        f = open(sys.executable, "rb")
        fcntl.flock(f, fcntl.LOCK_EX)
        os.set_inheritable(f.fileno(), True)
        detached_child()
    """, observe="""
        with open(sys.executable, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False
            except OSError:
                return True
    """, creatable={"gvisor": None, "process": None}),
    Row("timers", plant="""
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        if os.fork() == 0:
            os.setsid()
            signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
            while True:
                time.sleep(0.01)
    """, observe="""
        got = []
        signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
        time.sleep(0.3)
        return bool(got)
    """, creatable={"gvisor": True, "process": True}),
    Row("signals-from-leftovers", plant="""
        started = []
        signal.signal(signal.SIGUSR1, lambda s, f: started.append(s))
        if os.fork() == 0:
            os.setsid()
            while True:  # signals every process of the candidate uid it may reach
                for sig in (signal.SIGALRM, signal.SIGUSR1):
                    try:
                        os.kill(-1, sig)
                    except OSError:
                        pass
                time.sleep(0.01)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        deadline = time.monotonic() + 3.0
        while not started and time.monotonic() < deadline:  # the leftover runs (a loaded machine is slow)
            time.sleep(0.01)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    """, observe="""
        got = []
        for sig in (signal.SIGALRM, signal.SIGUSR1):
            signal.signal(sig, lambda s, f: got.append(s))
        time.sleep(0.3)
        return bool(got)
    """, creatable={"gvisor": True}, host_safe=False),
    Row("keyrings", plant="""
        for ring in (-4, -5, -3):  # user, user session, session keyring
            libc.syscall(248, b"user", b"elm-planted", b"secret", 6, ring)  # add_key
    """, observe="""
        found = []
        for ring in (-4, -5, -3):
            found.append(libc.syscall(250, 10, ring, b"user", b"elm-planted", 0) >= 0)  # KEYCTL_SEARCH
        return found
    """, creatable={"gvisor": False}, host_safe=False),
    Row("cgroup-files-and-sysctls", plant="""
        for path in ("/dev/.elm-pids/candidate/pids.max", "/dev/.elm-pids/pids.max",
                     "/proc/sys/kernel/shmmax", "/proc/sys/kernel/msgmax", "/proc/sys/kernel/hostname",
                     "/proc/sys/net/ipv4/ip_local_port_range", "/proc/sys/vm/overcommit_memory"):
            try:
                with open(path, "w") as f:
                    f.write("2")
            except OSError:
                pass
    """, observe="""
        writable, values = [], {}
        for top in ("/dev/.elm-pids", "/proc/sys", "/sys/fs/cgroup"):
            for dirpath, _, files in os.walk(top):
                for name in files:
                    path = os.path.join(dirpath, name)
                    if os.access(path, os.W_OK):
                        writable.append(path)
        for path in ("/dev/.elm-pids/candidate/pids.max", "/proc/sys/kernel/shmmax"):
            try:
                with open(path) as f:
                    values[path] = f.read()
            except OSError as exc:
                values[path] = exc.errno
        return [writable, values]
    """, creatable={"gvisor": False}, host_safe=False),
    Row("hostname", plant="""
        libc.sethostname(b"elm-planted", 11)
        libc.setdomainname(b"elm-planted", 11)
    """, observe="""
        try:
            with open("/proc/sys/kernel/domainname") as f:
                domain = f.read()
        except OSError as exc:
            domain = exc.errno
        return [socket.gethostname(), os.uname().nodename, domain]
    """, creatable={"gvisor": False, "process": True}, needs_namespaces=True),
    Row("environment", plant="""
        os.environ["ELM_PLANTED"] = "1"
        os.putenv("PYTHONHASHSEED", "1")
        detached_child()
    """, observe="""
        return sorted(os.environ.items())
    """, creatable={"gvisor": True, "process": True}),
    Row("inherited-fds", plant="""
        for fd in (os.open("/dev/null", os.O_RDONLY), socket.socket().detach(), *os.pipe()):
            os.set_inheritable(fd, True)
            os.dup2(fd, 40 + fd, inheritable=True)
        detached_child()
    """, observe="""
        fds = []
        for fd in range(1024):
            try:
                os.fstat(fd)
                fds.append(fd)
            except OSError:
                pass
        return fds
    """, creatable={"gvisor": True, "process": True}),
    Row("scratch-files", plant="""
        import tempfile
        d = tempfile.gettempdir()
        with open(os.path.join(d, "elm-planted"), "w") as f:
            f.write("x")
        os.makedirs(os.path.join(d, "elm-planted-dir", "a", "b"))
        socket.socket(socket.AF_UNIX).bind(os.path.join(d, "elm-planted.sock"))
    """, observe="""
        import tempfile
        return sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith("elm-planted"))
    """, creatable={"gvisor": True, "process": True}),
    Row("dev-shm", plant="""
        try:
            with open("/dev/shm/elm-planted", "w") as f:
                f.write("x" * 4096)
            os.mkdir("/dev/shm/elm-planted-dir")
        except OSError:
            pass  # not writable for the candidate uid under gVisor; scrubbed anyway
    """, observe="""
        try:
            return sorted(n for n in os.listdir("/dev/shm") if n.startswith("elm-planted"))
        except OSError as exc:
            return exc.errno
    """, creatable={"gvisor": False}, host_safe=False),
    Row("umask-rlimits-cwd", plant="""
        import resource
        os.umask(0o002)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        os.chdir("/")
        detached_child()
    """, observe="""
        import resource
        mask = os.umask(0o022)
        os.umask(mask)
        return [mask, resource.getrlimit(resource.RLIMIT_NOFILE), os.getcwd()]
    """, creatable={"gvisor": True, "process": True}),
]


@pytest.fixture(scope="module", params=BACKENDS)
def worker(request, sandbox_root):
    """One slot, so that A and B run one after the other in the same sandbox."""
    box = make(request.param, sandbox_root, limits=ISOLATION_LIMITS, workers=1)
    yield box
    box.close()


def _programs(row: Row) -> tuple[str, str]:
    observe = _fn("observe", row.observe)
    probe = _COMMON + observe + "def main():\n    return fingerprint(observe())\n"
    plant = (_COMMON + observe + _fn("plant", row.plant)
             + "def main():\n    plant()\n    return fingerprint(observe())\n")
    return plant, probe


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_no_carry_over(worker, row):
    backend = worker.backend
    if backend == "process" and not row.host_safe:
        pytest.skip("the process backend does not isolate this (it would change the host itself): see docs/sandbox.md")
    if backend == "process" and row.needs_namespaces and not worker._slots[0].info.get("namespaces"):
        pytest.skip("the process backend isolates this only when it may unshare namespaces (root)")
    plant, probe = _programs(row)
    before, planted, after = worker.evaluate([EvalRequest(1, probe), EvalRequest(2, plant), EvalRequest(3, probe)])
    for res in (before, planted, after):
        assert res.status is EvalStatus.OK, res
    assert after.fitness == before.fitness, (
        f"{row.name}: the candidate after the planter saw {after.stdout_tail!r}, "
        f"the one before it {before.stdout_tail!r}")
    creatable = row.creatable.get(backend)
    if creatable is not None:
        assert (planted.fitness != before.fitness) is creatable, (
            f"{row.name}: the planter observed {planted.stdout_tail!r} (before: {before.stdout_tail!r}); "
            f"the inventory says a candidate {'can' if creatable else 'cannot'} create this under {backend}")


def test_semaphore_score_does_not_depend_on_history(worker):
    """The issue's attack: the same source scored 1.27, 1.905, 2.222... as a semaphore counted its runs."""
    if worker.backend == "process" and not worker._slots[0].info.get("namespaces"):
        pytest.skip("the process backend isolates SysV IPC only when it may unshare namespaces (root)")
    source = prog("""
        import ctypes
        def main():
            libc = ctypes.CDLL(None, use_errno=True)
            sem = libc.semget(0xC0DE, 1, 0o1000 | 0o600)
            k = libc.semctl(sem, 0, 12)  # GETVAL
            buf = (ctypes.c_short * 3)(0, 1, 0)  # struct sembuf: semaphore 0, +1, no flags
            libc.semop(sem, buf, 1)
            return 2.5 * (1 - 0.5 ** (k + 1))
    """)
    results = worker.evaluate([EvalRequest(i, source) for i in range(6)])
    assert [(r.status, r.fitness) for r in results] == [(EvalStatus.OK, 1.25)] * 6, results
