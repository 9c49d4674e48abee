"""Clean-up of gVisor sandboxes left behind by a crashed owner process.

Every :class:`~sandbox.GVisorSandbox` keeps its runsc state, bundles and staged
harness under ``<root>/<owner-tag>-<random>/`` and names its sandboxes
``elm-<owner-tag>-...``, where the owner tag is ``<pid>-<start time>`` of the
owning process (the start time, in clock ticks since boot from
``/proc/<pid>/stat``, makes the tag immune to pid reuse). :func:`janitor`
removes only directories, sandboxes and cgroups whose owner is no longer
alive, so several live workers can share one root without touching each
other's sandboxes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from .procfs import start_time

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/tmp/elm-sandbox"
CGROUP_ROOT = "/sys/fs/cgroup"
_DIR_RE = re.compile(r"^(\d+)-(\d+)-[0-9a-f]+$")
_ID_RE = re.compile(r"^elm-(\d+)-(\d+)-")


def owner_tag(pid: int | None = None) -> str:
    """``<pid>-<start time>`` of this (or the given) process."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{start_time(pid) or 0}"


def owner_alive(pid: int, start: int) -> bool:
    """True when process ``pid`` exists and started at ``start`` (so it is the same process)."""
    current = start_time(pid)
    return current is not None and (start == 0 or current == start)


def _runsc() -> str | None:
    return os.environ.get("RUNSC_PATH") or shutil.which("runsc")


def _processes_using(path: str) -> list[int]:
    """Pids whose command line names ``path`` or something under it (runsc run/exec/gofer/sandbox)."""
    path = path.rstrip("/")
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        for arg in args:
            value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
            if value == path or value.startswith(path + "/"):
                found.append(int(name))
                break
    return found


def _remove_cgroups(is_dead=None, *, prefix: str | None = None) -> int:
    """Kill the tasks in, then rmdir, cgroup directories named ``elm-<pid>-<start>-...``.

    Those whose owner ``is_dead(pid, start)``, or (``prefix``) whose name starts with it.
    """
    removed = 0
    try:
        top = os.listdir(CGROUP_ROOT)
    except OSError:
        return 0

    def chosen(name: str) -> bool:
        m = _ID_RE.match(name)
        if not m:
            return False
        if prefix is not None:
            return name.startswith(prefix)
        return is_dead(int(m.group(1)), int(m.group(2)))

    candidates = []
    for entry in top:
        path = os.path.join(CGROUP_ROOT, entry)
        if _ID_RE.match(entry):
            candidates.append(path)  # cgroup v2: /sys/fs/cgroup/<id>
        elif os.path.isdir(path) and not os.path.islink(path):
            try:
                for sub in os.listdir(path):
                    if _ID_RE.match(sub):
                        candidates.append(os.path.join(path, sub))
            except OSError:
                continue
    for path in candidates:
        if not chosen(os.path.basename(path)):
            continue
        # Whatever still runs in a dead owner's cgroup is its leftover (e.g. a process-backend
        # candidate that escaped its fork server with setsid(): it has no parent-death signal).
        for _ in range(20):
            # Children first (rmdir only works on an empty cgroup without tasks).
            for dirpath, _, _ in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids = [int(x) for x in f.read().split()]
                except (OSError, ValueError):
                    pids = []
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                try:
                    os.rmdir(dirpath)
                    removed += dirpath == path
                except OSError:
                    pass
            if not os.path.exists(path):
                break
            time.sleep(0.05)
    return removed


def clean_owner_dir(path: str, timeout: float = 30.0) -> int:
    """Delete every sandbox under one owner directory, kill its runsc processes, remove it.

    Returns the number of sandboxes runsc knew about. Used by :func:`janitor`
    for dead owners; never call it on a live owner's directory.
    """
    state = os.path.join(path, "state")
    runsc = _runsc()
    ids: list[str] = []
    if runsc and os.path.isdir(state):
        try:
            out = subprocess.run(
                [runsc, "--root", state, "list", "--quiet"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )
            ids = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("janitor: runsc list under %s failed: %s", state, exc)

        def delete(sid: str) -> None:
            try:
                subprocess.run(
                    [runsc, "--root", state, "delete", "--force", sid],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("janitor: runsc delete %s failed: %s", sid, exc)

        threads = [threading.Thread(target=delete, args=(sid,), daemon=True) for sid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 5)
    # Whatever still runs with this directory on its command line (exec clients,
    # gofers, sandboxes runsc no longer lists) is killed outright.
    for _ in range(3):
        pids = _processes_using(path)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    shutil.rmtree(path, ignore_errors=True)
    return len(ids)


def remove_dead_cgroups() -> int:
    """Kill what runs in, then rmdir, the cgroup directories ``elm-<pid>-<start>-...`` of dead owners."""
    return _remove_cgroups(lambda pid, start: not owner_alive(pid, start))


#: the watchdog's program: this module's _watch, imported from where this package lives
_WATCH = ("import sys; sys.path.insert(0, sys.argv[1]); from sandbox.janitor import _watch; "
          "_watch(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])")
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Watchdog:
    """A helper process that removes one pool's sandboxes, cgroups and directory when its owner dies.

    Without it, a worker killed with -9 leaves its runsc sandboxes and gofers running
    (re-parented to init, ~65 MB each) until some later run's :func:`janitor` happens
    to start. The watchdog (``python -I`` running :func:`_watch`, in its own session, standard
    library only) holds the read end of a pipe whose only write end is the owner's
    (close-on-exec: runsc and the fork servers do not inherit it); at EOF, or when
    the owner's pid no longer names the same process (a child the owner forked
    without exec may hold the write end), it runs :func:`clean_owner_dir` on
    ``owner_dir`` and removes the cgroups whose names start with ``cgroup_prefix``.
    The owner calls :meth:`close` at the end of its own clean-up: the watchdog then
    finds nothing left and exits.
    """

    def __init__(self, *, owner_dir: str | None, cgroup_prefix: str | None) -> None:
        read_fd, self._write_fd = os.pipe()
        pid = os.getpid()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _WATCH, _PACKAGE_PARENT, str(pid), str(start_time(pid) or 0),
                 owner_dir or "", cgroup_prefix or ""],
                stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                close_fds=True, start_new_session=True,
            )
        except BaseException:
            os.close(self._write_fd)
            self._write_fd = -1
            raise
        finally:
            os.close(read_fd)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self, timeout: float = 10.0) -> None:
        """Tell the watchdog the owner is done (it cleans what is left, normally nothing) and reap it."""
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("sandbox watchdog %d still cleaning up after %g s; leaving it", self.proc.pid, timeout)


def _watch(owner_pid: int, owner_start: int, owner_dir: str, cgroup_prefix: str) -> None:
    """The watchdog's main: wait for EOF on stdin or the owner's death, then clean up after it."""
    import select

    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the owner's end of the pipe stops it
    while True:
        ready, _, _ = select.select([0], [], [], 1.0)
        if ready:
            try:
                if not os.read(0, 4096):
                    break
            except OSError:
                break
        elif not owner_alive(owner_pid, owner_start):
            break
    if owner_dir and os.path.isdir(owner_dir):
        clean_owner_dir(owner_dir)
    if cgroup_prefix:
        _remove_cgroups(prefix=cgroup_prefix)



def janitor(runtime_dir: str = DEFAULT_ROOT) -> int:
    """Remove sandboxes, state/bundle directories and cgroups left by dead owners under ``runtime_dir``.

    ``runtime_dir`` is the *root* shared by workers (``/tmp/elm-sandbox`` by
    default), not one worker's own directory. Only entries whose owner process
    (encoded in the directory and sandbox names) is dead are touched. Returns
    the number of leaked sandboxes deleted.
    """

    def is_dead(pid: int, start: int) -> bool:
        return not owner_alive(pid, start)

    removed = 0
    try:
        entries = os.listdir(runtime_dir)
    except OSError:
        entries = []
    for name in entries:
        m = _DIR_RE.match(name)
        if not m or not is_dead(int(m.group(1)), int(m.group(2))):
            continue
        path = os.path.join(runtime_dir, name)
        n = clean_owner_dir(path)
        if n:
            log.info("janitor: removed %d leaked sandbox(es) of dead owner %s", n, name)
        removed += n
    _remove_cgroups(is_dead)
    return removed
