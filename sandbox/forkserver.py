"""Fork server: evaluates candidate programs one at a time, each in a fresh forked child.

This file runs *inside* the sandbox (for the gVisor backend) or as a plain host
subprocess (for the process backend), with the sandbox's Python. It uses only
the standard library, ``elm`` (and whatever the environment imports) and its
sibling modules, split by job: ``protocol`` (framing, limits, error text),
``confine`` (namespaces, fds, rlimits, cgroups of a forked process), ``procfs``,
``scrub`` (emptying /tmp), ``zygote`` (the server's side of the forking helper)
and ``children`` (what the zygote, candidates and the scorer run). It is started
as a script with ``python -P -u forkserver.py`` (its own directory is not put on
``sys.path``; the ``sandbox`` package's parent is on ``PYTHONPATH``).

Protocol (over the server's original stdin/stdout, which it moves away from fds
0/1 at start-up so that nothing else can write to them by accident): every
message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
(``sandbox/protocol.py``).

1. host -> server: configuration ``{"target", "kwargs", "limits", "pidns", "drop_uid",
   "scorer_uid", "max_procs", "pids_cgroup", "scratch_dirs", "keep"}``
2. server -> host: ``{"ready": true, ...}`` or ``{"ready": false, "error": "..."}``
3. host -> server: ``{"id", "source", "timeout", "seed"}`` (``seed``: the run seed); server -> host: a dict whose
   keys map onto :class:`elm.types.EvalResult` plus ``leftover`` (processes that
   survived the clean-up; the host recycles the sandbox when it is not 0) and, when the scrub
   could not empty the scratch dirs, ``leftover_files`` (a few of the paths; recycled too).
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

import gc
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections import deque

from sandbox.children import ChildProcesses
from sandbox.confine import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    clamp_rlimits,
    mount_pids_cgroup,
    prctl,
    probe_unshare,
    use_pids_cgroup,
)
from sandbox.procfs import all_pids, descendants, proc_stat
from sandbox.protocol import (
    ERROR_CAP,
    EXIT_SETUP_FAILED,
    HEADER,
    MAX_FRAME,
    RESULT_CAP,
    SEED,
    TAIL_CHARS,
    format_exception,
    read_frame,
    write_all,
    write_frame,
)
from sandbox.scrub import remaining, scrub_dir
from sandbox.zygote import ZygoteLink, ZygoteLost, _Proc

WATCHDOG_S = 0.02  # how often the process-count watchdog looks while a child runs
ZOMBIE_WAIT_S = 0.5  # longest the clean-up waits for killed processes to be reaped (see Server._await_reaped)


class OwnerGone(RuntimeError):
    """The process that started the server died: there is no one left to answer."""


class Server(ZygoteLink, ChildProcesses):
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
        self.namespaces_ok = bool(self.unshare_flags) and probe_unshare(self.unshare_flags)
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
            self.cgroup = use_pids_cgroup(cfg["pids_cgroup_path"], self.max_procs)
        else:
            self.cgroup = mount_pids_cgroup(self.max_procs) if cfg.get("pids_cgroup") else None
        lim = self.limits
        mib = 1 << 20
        common = [
            (resource.RLIMIT_AS, lim["memory_mb"] * mib, lim["memory_mb"] * mib),
            (resource.RLIMIT_NPROC, lim["nproc"], lim["nproc"]),
            (resource.RLIMIT_FSIZE, lim["fsize_mb"] * mib, lim["fsize_mb"] * mib),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        self.candidate_rlimits = clamp_rlimits(common + [(resource.RLIMIT_CPU, lim["cpu_s"], lim["cpu_s"] + 1)])
        # RLIMIT_CPU is cumulative over a process's life, so the long-lived scorer has none:
        # each scoring is bounded by its wall-clock deadline instead (then the scorer is replaced).
        self.scorer_rlimits = clamp_rlimits(common)
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

    # -- helpers: the scorer and the spare child

    # -- victims and clean-up

    def _victims(self) -> list[int]:
        """Every process that is not init, the server or one of its helpers.

        Process backend: every pid the zygote forked must be known (``_settle``).
        """
        me = os.getpid()
        helpers = self._helper_pids()
        if self.pidns:
            out = [p for p in all_pids() if p not in (1, me) and p not in helpers]
            return [p for p in out if not self._unreported_helper(p)] if self._pending else out
        return [p for p in descendants(me) if p not in helpers]

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
        st = proc_stat(pid)
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

    def scrub(self) -> list[str]:
        """Empty the scratch dirs, leaving mount points and kept paths (and the way to them) alone.

        Returns what is still there after a second try (normally nothing): the caller reports it
        so that the host replaces the sandbox rather than let the next candidate see it (once, in
        a full test run on a loaded machine, an entry of a 3,000-level tree was left).
        """
        left: list[str] = []
        for d in self.scratch_dirs:
            scrub_dir(d, self.keep)
            if remaining(d, self.keep):
                scrub_dir(d, self.keep)
                left += remaining(d, self.keep)
        return left

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

    def cleanup(self, pgid: int) -> tuple[int, list[str]]:
        """Kill the child's process group and every escaped process, empty the scratch dirs.

        Returns (how many processes survive, the scratch paths that could not be removed).
        """
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
                st = proc_stat(pid)
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
        return len(survivors), self.scrub()

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
        blob = SEED.pack(candidate_seed(seed, source)) + HEADER.pack(len(data)) + data
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
                    write_all(child.fd("ctl_w"), blob)  # it may still be forking: the pipe holds 64 KiB
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
        leftover, left_files = self.cleanup(child.pid) if child.pid > 0 else self.cleanup(0)
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
            "leftover_files": left_files,
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
        st = proc_stat(sc.pid)
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
        out = memoryview(HEADER.pack(len(payload)) + payload)
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
                if len(buf) >= HEADER.size:
                    (length,) = HEADER.unpack_from(buf)
                    if len(buf) >= HEADER.size + length:
                        try:
                            header = json.loads(bytes(buf[HEADER.size:HEADER.size + length]))
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
                return {"status": "invalid", "error": str(header.get("message", ""))[: ERROR_CAP]}
            if kind == "memory":
                return {"status": "memory", "error": str(header.get("error", "MemoryError"))[: ERROR_CAP]}
            if kind == "exit":
                return {"status": "error", "error": f"{what} exited with code {header.get('code')} before returning"}
            if kind == "error":
                return {"status": "error", "error": str(header.get("error", ""))[: ERROR_CAP]}
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
        if run["leftover_files"]:
            # e.g. ['/tmp/d'] (at most a few names: the host only logs them and replaces the sandbox)
            resp["leftover_files"] = run["leftover_files"][:5] + (["..."] if len(run["leftover_files"]) > 5 else [])
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
    prctl(PR_SET_DUMPABLE, 0)

    # Orphans of candidates re-parent to us (where supported), so we can kill them.
    prctl(PR_SET_CHILD_SUBREAPER, 1)
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
