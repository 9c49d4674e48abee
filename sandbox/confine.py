"""What a freshly forked process does to itself: namespaces, fds, stdio, rlimits, cgroups, prctl.

Used by the fork server's zygote, candidates and scorer (inside the sandbox, or on the
host for the process backend). Standard library only.
"""

from __future__ import annotations

import ctypes
import fcntl
import io
import os
import resource
import socket
import struct
import sys

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
#: namespaces every candidate gets for itself (see Server._child_main): SysV IPC and POSIX message
#: queues (IPC), abstract Unix sockets and loopback ports (NET), hostname/domainname (UTS)
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
CANDIDATE_NAMESPACES = CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS
#: fds are first duplicated above this number, so that moving them onto 1..4 cannot clobber one another
HIGH_FD = 100

_libc = None


def prctl(option: int, arg: int) -> bool:
    """prctl(2) through ctypes; the libc handle is cached so that forked children need no dlopen."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(option, arg, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 -- no libc prctl here (not Linux): the caller goes on without it
        return False


def unshare(flags: int) -> None:
    """unshare(2) through ctypes; OSError naming the errno on failure."""
    prctl(0, 0)  # loads libc
    if _libc is None or _libc.unshare(flags) != 0:
        err = ctypes.get_errno() if _libc is not None else 0
        raise OSError(err, f"unshare({flags:#x}) failed: {os.strerror(err)}")


def loopback_up() -> None:
    """Bring up ``lo`` in a fresh network namespace (Linux creates it down; gVisor up)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, 0x8913, req))[1]  # SIOCGIFFLAGS
        if not flags & 1:  # IFF_UP
            fcntl.ioctl(sock, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))  # SIOCSIFFLAGS
    finally:
        sock.close()


def probe_unshare(flags: int) -> bool:
    """True when a child of this process can unshare ``flags`` (the process backend: root only)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            unshare(flags)
            if flags & CLONE_NEWNET:
                loopback_up()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _load_libc():
    """The cached libc handle (loaded by the first prctl call)."""
    prctl(0, 0)
    return _libc


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 -- a closed or broken stream has nothing left to flush
            pass


def move_fds(targets: dict[int, int]) -> None:
    """Make fd ``dst`` a copy of ``src`` for each ``dst: src``, then close every other fd above 0.

    Used in freshly forked processes, which inherit every fd of their parent
    (protocol pipes, other children's pipes): they keep only what they need.
    """
    high = {src: fcntl.fcntl(src, fcntl.F_DUPFD, HIGH_FD) for src in set(targets.values())}
    for dst, src in targets.items():
        os.dup2(high[src], dst)
    close_all_but(set(targets) | {0})


def close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def new_stdio() -> None:
    """Fresh sys.stdout/stderr on fds 1/2 (the parent's buffered objects must not be flushed twice)."""
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True,
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True,
    )


def clamp_rlimits(wanted) -> list[tuple[int, int, int]]:
    """``(resource, soft, hard)`` clamped to the current hard limits (computed once, not per child)."""
    out = []
    for res, soft, hard in wanted:
        _, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        out.append((res, soft, hard))
    return out


def use_pids_cgroup(path: str, max_procs: int) -> str | None:
    """Set pids.max of an existing (host) pids cgroup; None (the watchdog is used) if that fails."""
    try:
        with open(os.path.join(path, "pids.max"), "w") as f:
            f.write(str(max_procs))
        return path
    except OSError as exc:
        print(f"fork server: cannot use the pids cgroup {path} ({exc}); using the process-count watchdog",
              file=sys.stderr, flush=True)
        return None


def mount_pids_cgroup(max_procs: int) -> str | None:
    """Mount gVisor's pids controller and create ``candidate/`` with pids.max = ``max_procs``.

    gVisor does not enforce RLIMIT_NPROC, but its cgroupfs pids controller
    is enforced by its kernel: fork()/thread creation beyond pids.max fail
    with EAGAIN. Needs (gVisor-internal) CAP_SYS_ADMIN for the mount. Returns
    the child cgroup's path, or None (the watchdog is used instead).
    """
    mount_point = "/dev/.elm-pids"
    try:
        os.makedirs(mount_point, exist_ok=True)
        if not os.path.exists(os.path.join(mount_point, "cgroup.procs")):
            libc = _load_libc()
            libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                   ctypes.c_char_p]
            if libc.mount(b"cgroup", mount_point.encode(), b"cgroup", 0, b"pids") != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
        path = os.path.join(mount_point, "candidate")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "pids.max"), "w") as f:
            f.write(str(max_procs))
        return path
    except OSError as exc:
        print(f"fork server: no in-sandbox pids cgroup ({exc}); using the process-count watchdog",
              file=sys.stderr, flush=True)
        return None
