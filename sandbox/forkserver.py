"""Fork server: evaluates candidate programs one at a time, each in a fresh forked child.

This file runs *inside* the sandbox (for the gVisor backend) or as a plain host
subprocess (for the process backend), with the sandbox's Python. It uses only
the standard library plus ``elm`` (and whatever the environment imports), and is
started as a script with ``python -P -u forkserver.py`` so that its own
directory is not put on ``sys.path``.

Protocol (over the server's original stdin/stdout, which it moves away from fds
0/1 at start-up so that nothing else can write to them by accident): every
message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.

1. host -> server: configuration ``{"target", "kwargs", "limits", "pidns", "drop_uid",
   "scorer_uid", "max_procs", "pids_cgroup", "scratch_dirs", "keep"}``
2. server -> host: ``{"ready": true, ...}`` or ``{"ready": false, "error": "..."}``
3. host -> server: ``{"id", "source", "timeout", "seed"}`` (``seed``: the run seed); server -> host: a dict whose
   keys map onto :class:`elm.types.EvalResult` plus ``leftover`` (processes that
   survived the clean-up; the host recycles the sandbox when it is not 0).
   Repeat until the host closes stdin.

Processes. The server itself never runs candidate code; it stays the clean copy
every other process is forked from. Before the first candidate it forks

* the **scorer**: a persistent process (its own uid under gVisor, no
  capabilities) that runs ``env.score(output)`` plus validation for every
  candidate, on the candidate's JSON output only, and only once every process
  of that candidate has been killed. It is replaced whenever ``score()`` raises, runs out
  of memory, passes its deadline or dies, so it never carries state out of a
  failure. Candidates cannot reach it (another uid: no signals, no ptrace).
* a **spare child**: the next candidate's process, forked ahead of time. It
  waits (as root, before any limit is applied) for its program on a pipe, then
  joins the task-cap cgroup, sets its rlimits, drops to the candidate uid and
  runs ``env.execute(source)`` with stdout/stderr going to a capped pipe and its
  JSON output to a second pipe (fd 3). As soon as a spare has been handed its
  program, the server forks the next spare, so the fork (the dominant cost under
  gVisor's ptrace platform) overlaps the candidate's run instead of preceding it.

The server enforces a wall-clock deadline on each candidate with ``select`` and
``killpg(SIGKILL)``, then kills every process that escaped (see
:meth:`Server._victims`), reaps them and empties the scratch directories, and
only then hands the output to the scorer, under its own deadline.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import io
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback
from collections import deque

_HEADER = struct.Struct(">I")
#: the candidate's randomness seed, sent to a spare child ahead of its program
_SEED = struct.Struct(">Q")
MAX_FRAME = 64 << 20  # largest request the server accepts (a program source)
RESULT_CAP = 64 << 20  # largest raw output (JSON) a candidate may return
ERROR_CHARS = 4000  # error text / traceback tail kept per result
TAIL_CHARS = 2000  # stdout/stderr tail kept per result
EXIT_SETUP_FAILED = 70
WATCHDOG_S = 0.02  # how often the process-count watchdog looks while a child runs
ZOMBIE_WAIT_S = 0.5  # longest the clean-up waits for killed processes to be reaped (see Server._await_reaped)

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
#: namespaces every candidate gets for itself (see Server._isolate): SysV IPC and POSIX message
#: queues (IPC), abstract Unix sockets and loopback ports (NET), hostname/domainname (UTS)
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
CANDIDATE_NAMESPACES = CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS


# ----------------------------------------------------------------------------- framing


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(fd: int):
    """Read one length-prefixed JSON message; None at EOF."""
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    (length,) = _HEADER.unpack(head)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    body = _read_exact(fd, length)
    if body is None:
        return None
    return json.loads(body)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_frame(fd: int, obj) -> None:
    body = json.dumps(obj).encode("utf-8")
    _write_all(fd, _HEADER.pack(len(body)) + body)


# ----------------------------------------------------------------------------- helpers


_libc = None


def _prctl(option: int, arg: int) -> bool:
    """prctl(2) through ctypes; the libc handle is cached so that forked children need no dlopen."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(option, arg, 0, 0, 0) == 0
    except Exception:
        return False


def _unshare(flags: int) -> None:
    """unshare(2) through ctypes; OSError naming the errno on failure."""
    _prctl(0, 0)  # loads libc
    if _libc is None or _libc.unshare(flags) != 0:
        err = ctypes.get_errno() if _libc is not None else 0
        raise OSError(err, f"unshare({flags:#x}) failed: {os.strerror(err)}")


def _loopback_up() -> None:
    """Bring up ``lo`` in a fresh network namespace (Linux creates it down; gVisor up)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, 0x8913, req))[1]  # SIOCGIFFLAGS
        if not flags & 1:  # IFF_UP
            fcntl.ioctl(sock, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))  # SIOCSIFFLAGS
    finally:
        sock.close()


def _probe_unshare(flags: int) -> bool:
    """True when a child of this process can unshare ``flags`` (the process backend: root only)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _unshare(flags)
            if flags & CLONE_NEWNET:
                _loopback_up()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _shorten(text: str, limit: int = ERROR_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = limit // 4
    return text[:head] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-(limit - head):]


def format_exception(exc: BaseException) -> str:
    """Exception type, message and the tail of its traceback, at most ~ERROR_CHARS characters."""
    try:
        only = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:  # noqa: BLE001 - hostile __str__
        only = type(exc).__name__
    only = _shorten(only, ERROR_CHARS // 3)
    try:
        frames = "".join(traceback.format_tb(exc.__traceback__))
    except BaseException:  # noqa: BLE001
        frames = ""
    room = ERROR_CHARS - len(only) - 40
    if len(frames) > room:
        frames = "  ...\n" + frames[-room:]
    return f"Traceback (most recent call last):\n{frames}{only}"


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# ----------------------------------------------------------------------------- process clean-up


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    try:
        return int(rest[1]), rest[0]
    except (IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` via /proc/PID/task/*/children; None if unsupported."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # thread went away
            return None
        except OSError:
            continue
    return kids


def _descendants(root: int) -> list[int]:
    out: list[int] = []
    stack = [root]
    fast = True
    while stack and fast:
        kids = _children(stack.pop())
        if kids is None:
            fast = False
            break
        out.extend(kids)
        stack.extend(kids)
    if fast:
        return out
    # Fallback: build the parent map from a full /proc scan.
    parent: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None:
            parent.setdefault(st[0], []).append(pid)
    out, stack = [], [root]
    while stack:
        kids = parent.get(stack.pop(), [])
        out.extend(kids)
        stack.extend(kids)
    return out


#: fds inside a candidate child: 1 and 2 the capped stdout/stderr pipe, 3 the result pipe,
#: 4 (until the program has arrived) the pipe its program comes on
RESULT_FD = 3
CONTROL_FD = 4
#: fds are first duplicated above this number, so that moving them onto 1..4 cannot clobber one another
_HIGH_FD = 100
#: zygote messages (one SOCK_SEQPACKET datagram each): server -> zygote b"C"/b"S" + the new
#: process's pipe ends (SCM_RIGHTS); zygote -> server "P" (pid, or -errno) and "X" (a child exited)
_FORKED = struct.Struct(">ci")
_EXITED = struct.Struct(">ciid")
#: longest the server waits for the zygote to answer a fork or report a killed child's exit
ZYGOTE_TIMEOUT_S = 30.0


def scrub_dir(directory: str, keep: list[str]) -> None:
    """Delete everything under ``directory`` except mount points and the kept paths.

    ``keep`` holds normalised absolute paths (read-only binds such as a venv under ``/tmp``).
    A directory on the way to a kept path is not deleted but scrubbed in turn: inside the
    sandbox it is a writable skeleton directory of the tmpfs (``/tmp/<project>`` for a venv at
    ``/tmp/<project>/.venv``), and a file a candidate leaves there must not reach the next one.
    Errors are ignored: a path that cannot be removed is the health check's business. Trees
    of any depth are removed without recursion (see :func:`_remove_tree`); only the way to a
    kept path, fixed by the configuration, recurses.
    """
    try:
        dev = os.stat(directory).st_dev
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        path = os.path.normpath(entry.path)
        if path in keep:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_dev != dev:
                    continue  # a mount point
                if any(k.startswith(path + "/") for k in keep):
                    scrub_dir(path, keep)
                else:
                    _remove_tree(directory, entry.name, dev)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name: str, parent_fd: int) -> int | None:
    """fd of directory ``name`` in ``parent_fd``; a directory its owner made unreadable is opened up first."""
    for attempt in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except PermissionError:
            if attempt:
                return None
            try:
                os.chmod(name, 0o700, dir_fd=parent_fd, follow_symlinks=False)
            except (OSError, NotImplementedError):
                return None
        except OSError:
            return None
    return None


def _empty_dir(fd: int, dev: int) -> list[str]:
    """Unlink every non-directory in ``fd``; return the names of its subdirectories on device ``dev``."""
    subdirs: list[str] = []
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    except OSError:
        return subdirs
    opened_up = False
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev == dev:  # else a mount point: left alone
                subdirs.append(entry.name)
            continue
        try:
            os.unlink(entry.name, dir_fd=fd)
        except PermissionError:
            if not opened_up:  # a directory its owner made read-only
                opened_up = True
                try:
                    os.fchmod(fd, 0o700)
                    os.unlink(entry.name, dir_fd=fd)
                except OSError:
                    pass
        except OSError:
            pass
    return subdirs


def _remove_tree(parent: str, name: str, dev: int) -> None:
    """Remove the directory ``parent/name`` and everything under it, iteratively.

    A candidate can build a tree thousands of levels deep: recursion (``shutil.rmtree``)
    raised RecursionError, paths beyond PATH_MAX fail, and one fd per level would exceed
    RLIMIT_NOFILE. So this walks down by name relative to one open directory fd at a time
    and back up through ``..``; each directory is listed once (the names of its
    subdirectories still to remove are kept, on a stack, not fds). Symlinks are unlinked,
    never followed; mount points (another ``st_dev``) are left. What cannot be removed is
    left for the health check.
    """
    try:
        parent_fd = os.open(parent, _DIR_FLAGS)
    except OSError:
        return
    try:
        if _empty_tree(parent_fd, name, dev):
            os.rmdir(name, dir_fd=parent_fd)
    except OSError:
        pass
    finally:
        os.close(parent_fd)


def _empty_tree(parent_fd: int, name: str, dev: int) -> bool:
    """Remove what is under ``name`` (see :func:`_remove_tree`); False if it could not be opened or left."""
    fd = _open_dir(name, parent_fd)
    if fd is None:
        return False
    try:
        # levels[i]: (name of the directory at depth i, its subdirectories not yet removed)
        levels: list[tuple[str, list[str]]] = [(name, _empty_dir(fd, dev))]
        while True:
            pending = levels[-1][1]
            if pending:
                sub = pending.pop()
                child = _open_dir(sub, fd)
                if child is not None:
                    os.close(fd)
                    fd = child
                    levels.append((sub, _empty_dir(fd, dev)))
                continue
            done, _ = levels.pop()
            if not levels:
                return True
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            try:
                os.rmdir(done, dir_fd=fd)
            except OSError:
                pass
    except OSError:
        return False
    finally:
        os.close(fd)


class OwnerGone(RuntimeError):
    """The process that started the server died: there is no one left to answer."""


class ZygoteLost(RuntimeError):
    """The zygote died or stopped answering: the server cannot fork any more (the host recycles it)."""


def _read_blob(fd: int, limit: int) -> bytes | None:
    """Read one length-prefixed byte string (4-byte big-endian length); None at EOF."""
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    (length,) = _HEADER.unpack(head)
    if length > limit:
        raise ValueError(f"blob of {length} bytes exceeds the {limit}-byte limit")
    return _read_exact(fd, length)


def _move_fds(targets: dict[int, int]) -> None:
    """Make fd ``dst`` a copy of ``src`` for each ``dst: src``, then close every other fd above 0.

    Used in freshly forked processes, which inherit every fd of their parent
    (protocol pipes, other children's pipes): they keep only what they need.
    """
    high = {src: fcntl.fcntl(src, fcntl.F_DUPFD, _HIGH_FD) for src in set(targets.values())}
    for dst, src in targets.items():
        os.dup2(high[src], dst)
    _close_all_but(set(targets) | {0})


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _new_stdio() -> None:
    """Fresh sys.stdout/stderr on fds 1/2 (the parent's buffered objects must not be flushed twice)."""
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True,
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True,
    )


_WARM_UP = "def main():\n    return [1.5, 'x', {'k': (2,)}]\n"


def _warm_up() -> None:
    """Run, in a spare child still waiting for its program, the generic steps every candidate runs.

    After a fork, gVisor's ptrace platform makes each first write to a page a
    trip through the sentry. A trivial candidate writes the same pages every
    time (interpreter state, allocator arenas, refcounts of builtins, the
    compiler's and json's working memory), so paying for them here, while the
    previous candidate runs or the worker waits, takes them off the candidate's
    own time. Generic code only (no environment code: that could have state).
    """
    from elm.environment import load_entry_point, to_jsonable

    try:
        fn = load_entry_point(_WARM_UP, "main")
        json.dumps(to_jsonable(fn())).encode("utf-8")
        json.dumps({"kind": "ok"})
        time.monotonic()
    except Exception:  # noqa: BLE001 - a warm-up failure only costs speed
        pass


def _rlimits(wanted) -> list[tuple[int, int, int]]:
    """``(resource, soft, hard)`` clamped to the current hard limits (computed once, not per child)."""
    out = []
    for res, soft, hard in wanted:
        _, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        out.append((res, soft, hard))
    return out


class _Proc:
    """A process the zygote forks for the server, and the server's ends of its pipes (-1 once closed).

    ``pid`` is None until the zygote has answered (forks are requested without
    waiting), negative (-errno) if the fork failed.
    """

    __slots__ = ("pid", "fds")

    def __init__(self, fds: dict[str, int]) -> None:
        self.pid: int | None = None
        self.fds = fds

    def fd(self, name: str) -> int:
        return self.fds[name]

    def close(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.fds):
            fd = self.fds.get(key, -1)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                self.fds[key] = -1


class Server:
    """State of one fork server: the environment, the limits, the zygote, the scorer and the spare child."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.limits = dict(cfg["limits"])
        #: inside a gVisor sandbox the server owns the whole pid namespace: every process other
        #: than init (pid 1), the server and its helpers is a candidate's leftover.
        self.pidns = bool(cfg.get("pidns", False))
        #: uid of candidates (None: keep the server's uid, process backend)
        self.drop_uid = cfg.get("drop_uid")
        #: uid of the scorer: not the candidates' uid, so that they cannot signal or trace it
        self.scorer_uid = cfg.get("scorer_uid")
        #: most processes a candidate may have alive at once (a watchdog enforces it, because
        #: RLIMIT_NPROC is not enforced by gVisor, nor for root on Linux)
        self.max_procs = int(cfg.get("max_procs") or self.limits["nproc"])
        #: namespaces each candidate gets for itself, unshared by its spare before it is confined, and
        #: whether failing to do so is fatal (gVisor) or leaves it in the shared ones (process backend
        #: as a non-root user); ``namespaces_ok`` is what a probe found at start-up
        self.unshare_flags = int(cfg.get("unshare") or 0)
        self.unshare_required = bool(cfg.get("unshare_required", False))
        self.namespaces_ok = bool(self.unshare_flags) and _probe_unshare(self.unshare_flags)
        if self.unshare_required and not self.namespaces_ok:
            raise RuntimeError(
                f"cannot give candidates their own namespaces (unshare({self.unshare_flags:#x}) fails in a "
                "child of the fork server): the server needs CAP_SYS_ADMIN inside the sandbox"
            )
        #: directories whose contents are wiped after every child (files must not leak between candidates)
        self.scratch_dirs = [d for d in cfg.get("scratch_dirs") or [] if os.path.isdir(d)]
        #: paths inside scratch dirs that must survive (read-only binds such as a venv under /tmp)
        self.keep = [os.path.normpath(p) for p in cfg.get("keep") or []]
        #: a pids cgroup whose pids.max caps each child's tasks (kernel-enforced): gVisor's own
        #: (mounted here, ``pids_cgroup``), or a host one made by the process backend (``pids_cgroup_path``)
        if cfg.get("pids_cgroup_path"):
            self.cgroup = self._use_pids_cgroup(cfg["pids_cgroup_path"])
        else:
            self.cgroup = self._setup_pids_cgroup() if cfg.get("pids_cgroup") else None
        lim = self.limits
        mib = 1 << 20
        common = [
            (resource.RLIMIT_AS, lim["memory_mb"] * mib, lim["memory_mb"] * mib),
            (resource.RLIMIT_NPROC, lim["nproc"], lim["nproc"]),
            (resource.RLIMIT_FSIZE, lim["fsize_mb"] * mib, lim["fsize_mb"] * mib),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        self.candidate_rlimits = _rlimits(common + [(resource.RLIMIT_CPU, lim["cpu_s"], lim["cpu_s"] + 1)])
        # RLIMIT_CPU is cumulative over a process's life, so the long-lived scorer has none:
        # each scoring is bounded by its wall-clock deadline instead (then the scorer is replaced).
        self.scorer_rlimits = _rlimits(common)
        self.env = None
        self.space = None
        #: the forking helper and the server's end of the socket to it
        self.zygote_pid: int | None = None
        self.zsock: socket.socket | None = None
        #: fork requests sent to the zygote whose pid has not come back yet, in order
        self._pending: deque[_Proc] = deque()
        #: the next candidate's process, forked ahead of time (None: fork when needed)
        self.spare: _Proc | None = None
        #: the candidate running now (its exit report is kept)
        self.running: _Proc | None = None
        self.scorer: _Proc | None = None
        #: (wait status, CPU seconds) of the zygote's children that exited, by pid
        self._exits: dict[int, tuple[int, float]] = {}
        #: helpers that were SIGKILLed and whose exit report is still to come
        self._retired: set[int] = set()
        #: finished candidates, SIGKILLed once they had answered, whose exit report is still to
        #: come; the next candidate is not started before they are reaped (see ``_watch``)
        self._dying: set[int] = set()
        #: PR_SET_PDEATHSIG would fire when the *thread* that started us exits (the host starts slots
        #: from short-lived threads), so the server watches its parent pid instead
        self.parent_pid = os.getppid()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def _use_pids_cgroup(self, path: str) -> str | None:
        """Set pids.max of an existing (host) pids cgroup; None (the watchdog is used) if that fails."""
        try:
            with open(os.path.join(path, "pids.max"), "w") as f:
                f.write(str(self.max_procs))
            return path
        except OSError as exc:
            print(f"fork server: cannot use the pids cgroup {path} ({exc}); using the process-count watchdog",
                  file=sys.stderr, flush=True)
            return None

    def _setup_pids_cgroup(self) -> str | None:
        """Mount gVisor's pids controller and create ``candidate/`` with pids.max = max_procs.

        gVisor does not enforce RLIMIT_NPROC, but its cgroupfs pids controller
        is enforced by its kernel: fork()/thread creation beyond pids.max fail
        with EAGAIN. Needs (gVisor-internal) CAP_SYS_ADMIN for the mount. Returns
        the child cgroup's path, or None (the watchdog is used instead).
        """
        mount_point = "/dev/.elm-pids"
        try:
            os.makedirs(mount_point, exist_ok=True)
            if not os.path.exists(os.path.join(mount_point, "cgroup.procs")):
                _prctl(0, 0)  # load libc
                libc = _libc
                libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                       ctypes.c_char_p]
                if libc.mount(b"cgroup", mount_point.encode(), b"cgroup", 0, b"pids") != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            path = os.path.join(mount_point, "candidate")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "pids.max"), "w") as f:
                f.write(str(self.max_procs))
            return path
        except OSError as exc:
            print(f"fork server: no in-sandbox pids cgroup ({exc}); using the process-count watchdog",
                  file=sys.stderr, flush=True)
            return None

    # -- environment

    def build(self) -> None:
        import importlib

        from elm.environment import preload_modules
        from elm.sandbox import EnvironmentSpec

        spec = EnvironmentSpec(target=self.cfg["target"], kwargs=self.cfg.get("kwargs") or {})
        # Preload what the environment class asks for, so every candidate starts warm.
        module_name, _, attr = spec.target.rpartition(".")
        cls = None
        if module_name:
            try:
                cls = getattr(importlib.import_module(module_name), attr, None)
            except ImportError:
                cls = None  # spec.build() raises the clear error below
        for mod in getattr(cls, "preload", ()) or ():
            importlib.import_module(mod)
        self.env = spec.build()
        preload_modules(self.env)  # numpy.random too, so that every candidate's global RNG can be seeded
        self.space = self.env.descriptor_space

    # -- the zygote
    #
    # Under gVisor's ptrace platform a fork marks every writable page of the
    # parent copy-on-write, and each later write fault is a trip through the
    # sentry: the server's own work right after a fork ran 10-20x slower
    # (measured). So the server forks exactly once, at start-up: the zygote,
    # a clean copy that does nothing but fork (touching few pages) and report
    # its children's exits. Candidates, spares and scorers are its children.

    def start_helpers(self) -> None:
        """Fork the zygote, then (through it) the scorer and the first spare child, before any candidate."""
        self._spawn_zygote()
        self._spawn_scorer()
        self.spare = self._fork_child()
        self._settle()

    def _spawn_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _flush_std()
        pid = os.fork()
        if pid == 0:  # ------------------------------------------------ zygote
            code = EXIT_SETUP_FAILED
            try:
                ours.close()
                self._zygote_main(theirs)
                code = 0
            except BaseException:  # noqa: BLE001
                try:
                    os.write(2, ("fork server: zygote failed:\n" + traceback.format_exc()[-2000:]).encode())
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        theirs.close()
        self.zygote_pid, self.zsock = pid, ours

    def _zygote_main(self, sock: socket.socket) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _close_all_but({0, 1, 2, sock.fileno(), wake_r, wake_w})
        while True:
            ready, _, _ = select.select([sock, wake_r], [], [])
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                while True:
                    try:
                        pid, status, ru = os.wait4(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    sock.send(_EXITED.pack(b"X", pid, status, ru.ru_utime + ru.ru_stime))
            if sock in ready:
                data, fds, _, _ = socket.recv_fds(sock, 16, 4)
                if not data:
                    return  # the server is gone; our children die with us (PR_SET_PDEATHSIG)
                try:
                    pid = os.fork()
                except OSError as exc:
                    pid = -(exc.errno or 1)
                if pid == 0:  # -------------------------------------- its child
                    signal.set_wakeup_fd(-1)
                    sock.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    if data[:1] == b"S":
                        self._scorer_main(*fds)
                    else:
                        self._child_main(*fds)
                    return
                for fd in fds:
                    os.close(fd)
                sock.send(_FORKED.pack(b"P", pid))

    def _request_fork(self, kind: bytes, child_fds: list[int], proc: _Proc) -> _Proc:
        """Ask the zygote to fork ``kind`` with ``child_fds``; do not wait for it (see ``_await``)."""
        try:
            socket.send_fds(self.zsock, [kind], child_fds)
        except OSError as exc:
            proc.close()
            raise ZygoteLost(f"the zygote is gone ({exc})") from None
        finally:
            for fd in child_fds:
                os.close(fd)
        self._pending.append(proc)
        return proc

    def _zygote_message(self, timeout: float | None) -> bool:
        """Handle one message from the zygote if one arrives within ``timeout`` (None: wait); True if one did."""
        if timeout is not None:
            ready, _, _ = select.select([self.zsock], [], [], max(timeout, 0.0))
            if not ready:
                return False
        try:
            data = self.zsock.recv(64)
        except OSError as exc:
            raise ZygoteLost(f"the zygote's socket failed ({exc}): it died") from None
        if not data:
            raise ZygoteLost("the zygote closed its socket (it died)")
        if data[:1] == b"P":
            _, pid = _FORKED.unpack(data)
            self._pending.popleft().pid = pid
        elif data[:1] == b"X":
            _, pid, status, cpu = _EXITED.unpack(data)
            if pid in self._retired:
                self._retired.discard(pid)
            elif pid in self._dying:
                self._dying.discard(pid)
            elif any(p is not None and p.pid == pid for p in (self.running, self.spare, self.scorer)):
                self._exits[pid] = (status, cpu)
        return True

    def _pump(self) -> None:
        """Handle every message the zygote has sent so far, without waiting."""
        while self._zygote_message(0.0):
            pass

    def _await(self, until, what: str) -> None:
        """Handle zygote messages until ``until()`` holds; ZygoteLost after ZYGOTE_TIMEOUT_S."""
        deadline = time.monotonic() + ZYGOTE_TIMEOUT_S
        while not until():
            if not self._zygote_message(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise ZygoteLost(f"no answer from the zygote within {ZYGOTE_TIMEOUT_S:g} s ({what})")

    def _settle(self) -> None:
        """Wait until every fork asked of the zygote has happened (so that every pid is known)."""
        self._await(lambda: not self._pending, "fork")

    # -- helpers: the scorer and the spare child

    def _prepare_helpers(self) -> None:
        """While a candidate runs: ask for the next spare child and, if needed, a fresh scorer.

        Both are forked by the zygote, a clean copy of the server taken before
        any candidate, so they are as clean as the first ones.
        """
        if self.scorer is None:
            self._spawn_scorer()
        if self.spare is None:
            self.spare = self._fork_child()

    def _helper_pids(self) -> set[int]:
        pids = self._retired | self._dying
        if self.zygote_pid is not None:
            pids.add(self.zygote_pid)
        for proc in (self.spare, self.scorer):
            if proc is not None and proc.pid is not None:
                pids.add(proc.pid)
        return pids

    def _retire(self, proc: _Proc | None) -> None:
        """Close our ends and SIGKILL it; its exit report is dropped when it comes."""
        if proc is None:
            return
        proc.close()
        if proc.pid is None:
            self._await(lambda: proc.pid is not None, "fork")
        if proc.pid < 0:
            return
        if self._exits.pop(proc.pid, None) is not None:
            return  # already reaped by the zygote
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self._retired.add(proc.pid)

    def shutdown(self) -> None:
        """Stop the helpers (the host closed the protocol pipe): the zygote's children die with it."""
        for proc in (self.spare, self.scorer):
            if proc is not None and proc.pid is not None and proc.pid > 0:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.zsock is not None:
            self.zsock.close()
        if self.zygote_pid is not None:
            try:
                os.kill(self.zygote_pid, signal.SIGKILL)
                os.waitpid(self.zygote_pid, 0)
            except OSError:
                pass

    # -- victims and clean-up

    def _victims(self) -> list[int]:
        """Every process that is not init, the server or one of its helpers.

        Process backend: every pid the zygote forked must be known (``_settle``).
        """
        me = os.getpid()
        helpers = self._helper_pids()
        if self.pidns:
            out = [p for p in _all_pids() if p not in (1, me) and p not in helpers]
            return [p for p in out if not self._unreported_helper(p)] if self._pending else out
        return [p for p in _descendants(me) if p not in helpers]

    def _unreported_helper(self, pid: int) -> bool:
        """True for a spare or scorer the zygote has forked but not yet reported (gVisor only).

        Such a process is a child of the zygote and does not run as the candidate
        uid (root until it is handed a program; the scorer's uid after that). A
        candidate's process cannot be both: it cannot change its uid (no
        capabilities, setuid bits ignored: no_new_privs) and gVisor does not
        honour CLONE_PARENT. Telling them apart this way, rather than waiting for
        the zygote's report (``_settle``), keeps the clean-up off the zygote,
        which is busy forking the next spare (~25-35 ms under ptrace) right then.
        """
        st = _stat(pid)
        if st is None or st[0] != self.zygote_pid or self.drop_uid is None:
            return False
        try:
            with open(f"/proc/{pid}/status") as f:
                uids = next((line.split()[1:] for line in f if line.startswith("Uid:")), None)
        except OSError:
            return False
        return bool(uids) and all(int(u) != int(self.drop_uid) for u in uids)

    def at_task_limit(self) -> bool:
        """True when the running child has reached its task cap (then it is killed).

        With the in-sandbox pids cgroup, fork()/thread creation beyond the cap
        already fail with EAGAIN; the child is killed as soon as it sits at the
        cap anyway, because under gVisor's ptrace platform a process spinning on
        failing forks keeps adding host threads to the sandbox until its host
        pids cgroup kills the whole sandbox. Without the cgroup (process backend)
        this is the only enforcement: a process count, checked every WATCHDOG_S.
        """
        if self.cgroup is not None:
            try:
                with open(os.path.join(self.cgroup, "pids.current")) as f:
                    return int(f.read().strip() or 0) >= self.max_procs
            except (OSError, ValueError):
                return False
        self._settle()
        return len(self._victims()) > self.max_procs

    def scrub(self) -> None:
        """Empty the scratch dirs, leaving mount points and kept paths (and the way to them) alone."""
        for d in self.scratch_dirs:
            scrub_dir(d, self.keep)

    def _reap(self) -> None:
        """Reap the server's own dead children (orphans re-parented to it); read the zygote's reports."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.zygote_pid:
                raise ZygoteLost("the zygote died")
        self._pump()

    def cleanup(self, pgid: int) -> int:
        """Kill the child's process group and every escaped process; return how many survive."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        if not self.pidns:
            self._settle()  # a pid the zygote has forked but not yet reported would look like a victim
        survivors: list[int] = []
        victims: list[int] = []
        for attempt in range(12):
            victims = self._victims()
            survivors = []
            for pid in victims:
                st = _stat(pid)
                if st is None or st[1] in ("Z", "X"):
                    continue
                survivors.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._reap()
            if not survivors:
                break
            time.sleep(0.01 * (attempt + 1))
        if victims and not survivors:
            survivors = self._await_reaped()
        self.scrub()
        return len(survivors)

    def _await_reaped(self) -> list[int]:
        """Wait until the killed processes are reaped, not just dead; return those still there.

        A killed process stays in /proc as a zombie until its parent (init, for
        orphans) reaps it, which can take a while on a loaded machine. The next
        candidate would see it: ``kill()`` on a zombie succeeds, so a program
        probing for processes it can signal found "hits" (the soak saw 2 in
        10,000 candidates). The server waits up to ZOMBIE_WAIT_S; a zombie that
        is still there then counts as a leftover, so the host recycles the
        sandbox rather than let the next candidate see it.
        """
        until = time.monotonic() + ZOMBIE_WAIT_S
        delay = 0.001
        while True:
            self._reap()  # orphans re-parented to the server (process backend) are reaped here
            left = self._victims()
            if not left or time.monotonic() >= until:
                return left
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- what the zygote's children do

    def _confine(self, rlimits, uid, *, join_cgroup: bool) -> None:
        """Apply the limits and drop to ``uid``: after this the process holds no privilege of the server."""
        if join_cgroup and self.cgroup is not None:  # before any candidate code: no fork can escape the cap
            with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        for res, soft, hard in rlimits:
            resource.setrlimit(res, (soft, hard))
        if uid is not None:
            uid = int(uid)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if os.getuid() != uid or os.geteuid() != uid:
                raise RuntimeError("failed to drop privileges")
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: a uid change clears it

    def _fork_child(self) -> _Proc:
        """Ask the zygote for a candidate child that waits, unconfined, for its program (``_child_main``)."""
        (ctl_r, ctl_w), (out_r, out_w), (res_r, res_w) = os.pipe(), os.pipe(), os.pipe()
        proc = _Proc({"ctl_w": ctl_w, "out_r": out_r, "res_r": res_r})
        return self._request_fork(b"C", [ctl_r, out_w, res_w], proc)

    def _child_main(self, ctl_r: int, out_w: int, res_w: int) -> None:
        code = EXIT_SETUP_FAILED
        try:
            # 1. Ahead of time (a spare): own session, pipes in place, nothing else of the server's.
            os.setsid()
            if self.namespaces_ok:
                # Fresh IPC/network/UTS namespaces, while still privileged: what an earlier
                # candidate planted there (a SysV semaphore, a message queue) is out of reach.
                _unshare(self.unshare_flags)
                if self.unshare_flags & CLONE_NEWNET:
                    _loopback_up()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            _move_fds({1: out_w, 2: out_w, RESULT_FD: res_w, CONTROL_FD: ctl_r})
            _new_stdio()
            _warm_up()
            # 2. Wait for the seed and the program. EOF: the server discarded this spare (or died).
            seed = _read_exact(CONTROL_FD, _SEED.size)
            source = _read_blob(CONTROL_FD, MAX_FRAME) if seed is not None else None
            if source is not None:
                os.close(CONTROL_FD)
                # 3. Confine, then run it.
                self._confine(self.candidate_rlimits, self.drop_uid, join_cgroup=True)
                self._candidate(source.decode("utf-8", "surrogatepass"), _SEED.unpack(seed)[0], RESULT_FD)
            code = 0
        except BaseException:  # noqa: BLE001
            try:
                os.write(2, ("fork server: child failed:\n" + traceback.format_exc()[-2000:]).encode())
            except BaseException:  # noqa: BLE001
                pass
        finally:
            os._exit(code)

    def _spawn_scorer(self) -> None:
        (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
        os.set_blocking(req_w, False)
        os.set_blocking(resp_r, False)
        self.scorer = self._request_fork(b"S", [req_r, resp_w], _Proc({"req_w": req_w, "resp_r": resp_r}))

    def _scorer_main(self, req_r: int, resp_w: int) -> None:
        """Score outputs until EOF, or until a scoring leaves doubt about this process's state."""
        code = EXIT_SETUP_FAILED
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # What score() prints goes nowhere: its result and traceback come back in the answer.
            null = os.open(os.devnull, os.O_RDWR)
            _move_fds({1: null, 2: null, 3: req_r, 4: resp_w})
            _new_stdio()
            self._confine(self.scorer_rlimits, self.scorer_uid, join_cgroup=False)
            code = 0
            while True:
                payload = _read_blob(3, RESULT_CAP)
                if payload is None:
                    break
                header = self._score(payload)
                _flush_std()
                write_frame(4, header)
                if header.get("respawn"):
                    break
        except BaseException:  # noqa: BLE001
            code = EXIT_SETUP_FAILED
        finally:
            os._exit(code)

    # -- the candidate

    def run_candidate(self, source: str, timeout: float, output_cap: int, seed: int = 0) -> dict:
        """Hand ``source`` to a child, enforce the deadline and the caps, clean up after it.

        Returns a dict with ``header`` (the parsed first line of what the child
        wrote to fd 3, or None), ``payload`` (the bytes after it), ``reason``
        (None, "timeout", "nproc", "output_limit" or "result_limit"), ``status``
        and ``cpu`` of the child, ``out_bytes``, ``tail``, ``elapsed`` and ``leftover``.
        """
        from elm.types import candidate_seed

        data = source.encode("utf-8", "surrogatepass")
        if len(data) > MAX_FRAME:
            raise ValueError(f"program of {len(data)} bytes exceeds the {MAX_FRAME}-byte limit")
        blob = _SEED.pack(candidate_seed(seed, source)) + _HEADER.pack(len(data)) + data
        # The previous candidate may not be reaped yet (see _watch): until it is, it is visible
        # in /proc (a zombie that kill() "succeeds" on), so this one waits for that first.
        self._await(lambda: not self._dying, "exit of the previous candidate")
        t0 = time.monotonic()
        child = None
        for _ in range(2):
            child, self.spare = self.spare, None
            if child is None:
                child = self._fork_child()
            self.running = child
            if child.pid is not None and (child.pid < 0 or child.pid in self._exits):
                ok = False  # its fork failed, or it died while waiting
            else:
                try:
                    _write_all(child.fd("ctl_w"), blob)  # it may still be forking: the pipe holds 64 KiB
                    ok = True
                except OSError:  # EPIPE: it died just now
                    ok = False
            if ok:
                break
            self.running = None
            self._retire(child)
            child = None
        if child is None:
            raise RuntimeError("could not hand the program to a child (two children died before reading it)")
        child.close("ctl_w")
        self._prepare_helpers()
        try:
            return self._watch(child, t0, timeout, output_cap)
        finally:
            child.close()
            self.running = None

    def _watch(self, child: _Proc, t0: float, timeout: float, output_cap: int) -> dict:
        out_r, res_r = child.fd("out_r"), child.fd("res_r")
        deadline = t0 + timeout
        open_fds = {out_r, res_r}
        tail = bytearray()
        out_bytes = 0
        res = bytearray()
        reason = None
        exited = None

        def consume(fd: int) -> None:
            nonlocal out_bytes, reason
            data = os.read(fd, 1 << 16)
            if not data:
                open_fds.discard(fd)
                return
            if fd == out_r:
                out_bytes += len(data)
                tail.extend(data)
                if len(tail) > 4 * TAIL_CHARS:
                    del tail[: len(tail) - 4 * TAIL_CHARS]
                if out_bytes > output_cap and reason is None:
                    reason = "output_limit"
            else:
                res.extend(data)
                if len(res) > RESULT_CAP and reason is None:
                    reason = "result_limit"

        next_check = time.monotonic() + WATCHDOG_S
        while True:
            if child.pid is not None and child.pid in self._exits:
                exited = self._exits.pop(child.pid)
                break
            if child.pid is not None and child.pid < 0:
                raise OSError(-child.pid, f"the zygote could not fork a child: {os.strerror(-child.pid)}")
            now = time.monotonic()
            if now >= deadline:
                reason = "timeout"
                break
            if now >= next_check:
                if self.at_task_limit():
                    reason = "nproc"
                    break
                if os.getppid() != self.parent_pid:
                    # The host process that started us died (killed with -9?): nobody will read the
                    # answer. Stop now rather than at the deadline; shutdown() takes every child along.
                    raise OwnerGone(f"the fork server's parent {self.parent_pid} is gone")
                next_check = now + WATCHDOG_S
            wait = min(deadline - now, next_check - now, 0.25)
            ready, _, _ = select.select(list(open_fds) + [self.wake_r, self.zsock], [], [], max(wait, 0.0))
            for fd in ready:
                if fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif fd is self.zsock:
                    self._pump()
                else:
                    consume(fd)
            if reason is not None or not open_fds:
                break
        elapsed = time.monotonic() - t0
        header, payload = self._parse_result(res)
        if (self.pidns and exited is None and reason is None and header is not None and child.pid is not None
                and child.pid > 0):
            # It answered and closed its pipes: it is exiting. Under gVisor, waiting for the zygote's
            # report of its exit would put the zygote on the critical path, and the zygote is then
            # busy forking the next spare (measured: the report came ~25-35 ms after the answer).
            # SIGKILL makes sure it runs no more code; the status is not needed, the header says
            # how it ended. It stays a zombie until the zygote reaps it, so the next candidate
            # waits for that (run_candidate); the clean-up below leaves it to the zygote. (The
            # process backend forks in ~1 ms and waits, so its slot cgroup is empty on answering.)
            for kill in (os.killpg, os.kill):
                try:
                    kill(child.pid, signal.SIGKILL)
                except OSError:
                    pass
            if self._exits.pop(child.pid, None) is None:  # else: its report has come meanwhile
                self._dying.add(child.pid)
            exited = (None, 0.0)
        if exited is None:
            self._await(lambda: child.pid is not None, "fork")
            if child.pid > 0:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    os.kill(child.pid, signal.SIGKILL)  # in case it had not called setsid() yet
                except OSError:
                    pass
                self._await(lambda: child.pid in self._exits, "exit of a killed child")
                exited = self._exits.pop(child.pid)
            else:
                exited = (0, 0.0)
        leftover = self.cleanup(child.pid) if child.pid > 0 else self.cleanup(0)
        # Drain what is still buffered in the pipes (everyone holding them is dead now).
        drain_until = time.monotonic() + 0.5
        while open_fds and time.monotonic() < drain_until:
            ready, _, _ = select.select(list(open_fds), [], [], max(0.0, drain_until - time.monotonic()))
            if not ready:
                break
            for fd in ready:
                consume(fd)
        header, payload = self._parse_result(res)
        return {
            "header": header,
            "raw_result": bool(res),
            "payload": payload,
            "reason": reason,
            "status": exited[0],
            "cpu": exited[1],
            "elapsed": elapsed,
            "out_bytes": out_bytes,
            "tail": bytes(tail).decode("utf-8", "replace")[-TAIL_CHARS:],
            "leftover": leftover,
        }

    @staticmethod
    def _parse_result(res: bytearray) -> tuple[dict | None, bytes | None]:
        """(header, payload) from what a child wrote to its result pipe: a JSON line, then the output."""
        if not res:
            return None, None
        line, _, rest = bytes(res).partition(b"\n")
        try:
            header = json.loads(line)
        except (ValueError, RecursionError):
            return None, rest
        return (header if isinstance(header, dict) else None), rest

    # -- scoring

    def _scorer_usable(self) -> bool:
        """The scorer is alive and neither stopped nor traced (the process backend cannot prevent that)."""
        sc = self.scorer
        if sc is None or sc.pid is None:
            return sc is not None
        if sc.pid < 0 or sc.pid in self._exits:
            return False
        st = _stat(sc.pid)
        return st is not None and st[1] not in ("Z", "X", "T", "t")

    def score(self, payload: bytes, timeout: float) -> dict:
        """Have the scorer score ``payload`` within ``timeout``; a run-like dict for ``_interpret``."""
        if self.scorer is not None and not self._scorer_usable():
            self._retire(self.scorer)
            self.scorer = None
        if self.scorer is None:
            self._spawn_scorer()
        sc = self.scorer
        req_w, resp_r = sc.fd("req_w"), sc.fd("resp_r")
        t0 = time.monotonic()
        deadline = t0 + timeout
        out = memoryview(_HEADER.pack(len(payload)) + payload)
        buf = bytearray()
        header = None
        reason = None
        died = False
        while header is None:
            now = time.monotonic()
            if now >= deadline:
                reason = "timeout"
                break
            readable, writable, _ = select.select([resp_r], [req_w] if out else [], [], deadline - now)
            if writable:
                try:
                    out = out[os.write(req_w, out[:1 << 16]):]
                except BlockingIOError:
                    pass
                except OSError:  # EPIPE: it died
                    died = True
                    break
            if readable:
                try:
                    data = os.read(resp_r, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    died = True
                    break
                buf += data
                if len(buf) >= _HEADER.size:
                    (length,) = _HEADER.unpack_from(buf)
                    if len(buf) >= _HEADER.size + length:
                        try:
                            header = json.loads(bytes(buf[_HEADER.size:_HEADER.size + length]))
                        except ValueError:
                            header = {"kind": "error", "error": "the scorer sent malformed JSON", "respawn": True}
        elapsed = time.monotonic() - t0
        status = None
        if died:
            self._await(lambda: sc.pid is not None, "fork")
            if sc.pid > 0:
                self._await(lambda: sc.pid in self._exits, "exit of the scorer")
                status = self._exits.pop(sc.pid)[0]
            sc.close()
            self.scorer = None
        elif reason is not None or header.get("respawn"):
            # killed at its deadline, or it exits by itself after a failed scoring: replace it
            self._retire(sc)
            self.scorer = None
        return {"header": header, "raw_result": header is not None, "reason": reason,
                "status": status, "cpu": 0.0, "elapsed": elapsed, "tail": ""}

    # -- what the children run

    def _candidate(self, source: str, seed: int, fd: int) -> None:
        from elm.environment import InvalidProgram, seed_randomness, to_jsonable

        payload = b""
        try:
            seed_randomness(seed)
            output = self.env.execute(source)
            try:
                payload = json.dumps(to_jsonable(output)).encode("utf-8")
                header = {"kind": "ok"}
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                header = {
                    "kind": "invalid",
                    "message": _shorten(
                        f"program output is not JSON-serialisable: {type(exc).__name__}: {exc}"
                    ),
                }
        except InvalidProgram as exc:
            header = {"kind": "invalid", "message": _shorten(str(exc) or "invalid program")}
        except MemoryError as exc:
            header = {"kind": "memory", "error": format_exception(exc)}
        except SystemExit as exc:
            header = {"kind": "exit", "code": _exit_code(exc)}
        except BaseException as exc:  # noqa: BLE001
            header = {"kind": "error", "error": format_exception(exc)}
        _flush_std()
        _write_all(fd, json.dumps(header).encode("utf-8") + b"\n" + payload)
        os.close(fd)

    def _score(self, payload: bytes) -> dict:
        """Score one output (in the scorer). ``respawn``: score() raised, so this process is replaced."""
        from elm.environment import InvalidProgram, to_jsonable, validate_evaluation

        try:
            output = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            return {"kind": "invalid", "message": f"program output is not valid JSON: {exc}"}
        except MemoryError as exc:
            return {"kind": "memory", "respawn": True,
                    "error": "program output too large to parse: " + format_exception(exc)}
        try:
            raw = self.env.score(output)
        except InvalidProgram as exc:
            return {"kind": "invalid", "respawn": True, "message": _shorten(str(exc) or "invalid program")}
        except MemoryError as exc:
            return {"kind": "memory", "respawn": True,
                    "error": "environment score() ran out of memory: " + format_exception(exc)}
        except BaseException as exc:  # noqa: BLE001
            return {"kind": "error", "respawn": True, "error": "environment score() raised " + format_exception(exc)}
        try:
            evaluation = validate_evaluation(raw, self.space)
            info = to_jsonable(dict(evaluation.info))
            try:
                json.dumps(info)
            except Exception as exc:  # noqa: BLE001
                raise TypeError(f"Evaluation.info is not JSON-serialisable: {exc}") from None
            return {"kind": "ok", "fitness": evaluation.fitness, "descriptor": list(evaluation.descriptor),
                    "info": info}
        except InvalidProgram as exc:
            return {"kind": "invalid", "message": _shorten(str(exc) or "invalid program")}
        except MemoryError as exc:
            return {"kind": "memory", "respawn": True,
                    "error": "environment score() ran out of memory: " + format_exception(exc)}
        except BaseException as exc:  # noqa: BLE001
            return {"kind": "error", "respawn": True, "error": "environment score() raised " + format_exception(exc)}

    # -- one request

    def _interpret(self, run: dict, timeout: float, what: str) -> dict:
        """Map a finished child onto status/error (for a run that produced no usable header)."""
        reason = run["reason"]
        if reason == "output_limit":
            return {
                "status": "output_limit",
                "error": f"{what} wrote more than {self.limits['output_bytes']} bytes to stdout/stderr",
                "output_truncated": True,
            }
        if reason == "result_limit":
            return {
                "status": "output_limit",
                "error": f"{what} returned more than {RESULT_CAP} bytes of output",
                "output_truncated": True,
            }
        if reason == "nproc":
            unit = "tasks (processes + threads)" if self.cgroup is not None else "processes"
            return {"status": "error",
                    "error": f"{what} reached its limit of {self.max_procs} {unit} (fork bomb?); killed"}
        if reason == "timeout":
            return {"status": "timeout", "error": f"{what} killed at its {timeout:g} s wall-clock deadline"}
        header = run["header"]
        if header is not None:
            kind = header.get("kind")
            if kind == "ok":
                return {"status": "ok"}
            if kind == "invalid":
                return {"status": "invalid", "error": str(header.get("message", ""))[: ERROR_CHARS + 200]}
            if kind == "memory":
                return {"status": "memory", "error": str(header.get("error", "MemoryError"))[: ERROR_CHARS + 200]}
            if kind == "exit":
                return {"status": "error", "error": f"{what} exited with code {header.get('code')} before returning"}
            if kind == "error":
                return {"status": "error", "error": str(header.get("error", ""))[: ERROR_CHARS + 200]}
        if run["raw_result"]:
            return {"status": "error", "error": f"{what} corrupted its result channel"}
        status = run["status"]
        if status is None:
            return {"status": "error", "error": f"{what} ended without an answer"}
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            if code == EXIT_SETUP_FAILED:
                return {"status": "error", "error": f"{what}: sandbox child set-up failed:\n{run['tail'][-1500:]}"}
            return {"status": "error", "error": f"{what} exited with code {code} before returning"}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and run["cpu"] >= self.limits["cpu_s"] - 0.5):
                return {"status": "timeout", "error": f"{what} exceeded its {self.limits['cpu_s']} s CPU-time limit"}
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            extra = " (out of memory?)" if sig == signal.SIGKILL else ""
            return {"status": "error", "error": f"{what} was killed by signal {name}{extra}"}
        return {"status": "error", "error": f"{what} ended with wait status {status}"}

    def handle(self, req: dict) -> dict:
        rid = req.get("id")
        timeout = float(req.get("timeout") or self.limits["timeout_s"])
        source = req.get("source")
        resp = {"id": rid, "status": "error", "fitness": None, "descriptor": None, "info": {},
                "error": None, "stdout_tail": "", "output_truncated": False,
                "run_s": 0.0, "score_s": 0.0, "leftover": 0}
        if not isinstance(source, str):
            resp["error"] = "request has no program source"
            return resp
        cap = int(self.limits["output_bytes"])
        seed = req.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            resp["error"] = f"request seed must be an int, got {seed!r}"
            return resp
        run = self.run_candidate(source, timeout, cap, seed)
        resp["run_s"] = run["elapsed"]
        resp["stdout_tail"] = run["tail"]
        resp["output_truncated"] = run["out_bytes"] > cap
        resp["leftover"] = run["leftover"]
        resp.update(self._interpret(run, timeout, "program"))
        if resp["status"] != "ok":
            return resp
        payload = run["payload"] or b"null"
        run = None  # free the candidate's buffers
        score = self.score(payload, timeout)
        resp["score_s"] = score["elapsed"]
        verdict = self._interpret(score, timeout, "environment score()")
        resp.update(verdict)
        if verdict["status"] == "ok":
            header = score["header"]
            resp["fitness"] = header["fitness"]
            resp["descriptor"] = header["descriptor"]
            resp["info"] = header.get("info") or {}
        resp["output_truncated"] = resp["output_truncated"] or bool(verdict.get("output_truncated"))
        return resp


def main() -> int:
    # Move the protocol pipes off fds 0/1: stdin becomes /dev/null and stdout goes
    # to stderr, so a stray print (or a child) cannot corrupt the protocol.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # Not dumpable: other processes of the same uid cannot ptrace us or open /proc/<pid>/fd.
    _prctl(PR_SET_DUMPABLE, 0)

    # Orphans of candidates re-parent to us (where supported), so we can kill them.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    t0 = time.monotonic()
    try:
        cfg = read_frame(proto_in)
    except Exception as exc:  # noqa: BLE001
        write_frame(proto_out, {"ready": False, "error": f"bad configuration message: {exc}"})
        return 2
    if cfg is None:
        return 0
    try:
        server = Server(cfg)
        server.build()
    except BaseException as exc:  # noqa: BLE001
        write_frame(proto_out, {"ready": False, "error": format_exception(exc)})
        return 3
    gc.collect()
    gc.freeze()  # keep the warm heap shared copy-on-write with every child
    try:
        server.start_helpers()
    except BaseException as exc:  # noqa: BLE001
        write_frame(proto_out, {"ready": False, "error": "could not start the zygote/scorer: " + format_exception(exc)})
        return 3
    write_frame(proto_out, {
        "ready": True,
        "pid": os.getpid(),
        "zygote_pid": server.zygote_pid,
        "scorer_pid": server.scorer.pid,
        "python": sys.version.split()[0],
        "startup_s": time.monotonic() - t0,
        "pids_cgroup": server.cgroup is not None,
        "max_procs": server.max_procs,
        "namespaces": server.namespaces_ok,
    })
    try:
        while True:
            try:
                req = read_frame(proto_in)
            except ValueError as exc:
                write_frame(proto_out, {"id": None, "status": "error", "error": str(exc), "leftover": 0})
                return 4
            if req is None:
                return 0
            try:
                resp = server.handle(req)
            except OwnerGone:
                return 0
            except ZygoteLost as exc:  # only a candidate that could signal it (process backend) does this
                resp = {"id": req.get("id"), "status": "sandbox_lost",
                        "error": f"sandbox lost: {exc}; replaced", "leftover": -1}
            except BaseException as exc:  # noqa: BLE001 - the server must answer, then be recycled
                resp = {"id": req.get("id"), "status": "error",
                        "error": "fork server internal error: " + format_exception(exc), "leftover": -1}
            write_frame(proto_out, resp)
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
