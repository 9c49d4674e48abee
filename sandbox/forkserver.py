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
   "max_procs", "pids_cgroup", "scratch_dirs", "keep"}``
2. server -> host: ``{"ready": true, ...}`` or ``{"ready": false, "error": "..."}``
3. host -> server: ``{"id", "source", "timeout"}``; server -> host: a dict whose
   keys map onto :class:`elm.types.EvalResult` plus ``leftover`` (processes that
   survived the clean-up; the host recycles the sandbox when it is not 0).
   Repeat until the host closes stdin.

Per candidate the server forks a child that runs ``env.execute(source)`` under
rlimits, with stdout/stderr going to a capped pipe and its JSON output going to
a second pipe (fd 3). If that succeeds it forks a *second*, fresh child from the
clean server which runs ``env.score(output)`` and validates the evaluation, so
the candidate never shares a process with scoring. The server enforces a
wall-clock deadline on each child with ``select`` and ``killpg(SIGKILL)``, then
kills every process that escaped (see :func:`_victims`) and reaps them.
"""

from __future__ import annotations

import ctypes
import gc
import io
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time
import traceback

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # largest request the server accepts (a program source)
RESULT_CAP = 64 << 20  # largest raw output (JSON) a candidate may return
ERROR_CHARS = 4000  # error text / traceback tail kept per result
TAIL_CHARS = 2000  # stdout/stderr tail kept per result
EXIT_SETUP_FAILED = 70
WATCHDOG_S = 0.02  # how often the process-count watchdog looks while a child runs

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


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


class Server:
    """State of one fork server: the environment, the limits and the wake-up pipe."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.limits = dict(cfg["limits"])
        #: inside a gVisor sandbox the server owns the whole pid namespace: every
        #: process other than init (pid 1) and the server is a candidate's leftover.
        self.pidns = bool(cfg.get("pidns", False))
        self.drop_uid = cfg.get("drop_uid")
        #: most processes a candidate may have alive at once (a watchdog enforces it, because
        #: RLIMIT_NPROC is not enforced by gVisor, nor for root on Linux)
        self.max_procs = int(cfg.get("max_procs") or self.limits["nproc"])
        #: directories whose contents are wiped after every child (files must not leak between candidates)
        self.scratch_dirs = [d for d in cfg.get("scratch_dirs") or [] if os.path.isdir(d)]
        #: paths inside scratch dirs that must survive (read-only binds such as a venv under /tmp)
        self.keep = [os.path.normpath(p) for p in cfg.get("keep") or []]
        #: an in-sandbox pids cgroup whose pids.max caps each child's tasks (kernel-enforced, gVisor)
        self.cgroup = self._setup_pids_cgroup() if cfg.get("pids_cgroup") else None
        self.env = None
        self.space = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

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
        self.space = self.env.descriptor_space

    # -- victims and clean-up

    def _victims(self) -> list[int]:
        me = os.getpid()
        if self.pidns:
            return [p for p in _all_pids() if p not in (1, me)]
        return _descendants(me)

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
        return self.count_procs() > self.max_procs

    def count_procs(self) -> int:
        """Processes other than init and the server (pidns) / descendants of the server."""
        if self.pidns:
            return len(_all_pids()) - 2
        return len(_descendants(os.getpid()))

    def scrub(self) -> None:
        """Empty the scratch dirs, leaving mount points and kept paths (and their parents) alone."""
        for d in self.scratch_dirs:
            try:
                dev = os.stat(d).st_dev
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                path = os.path.normpath(entry.path)
                if any(k == path or k.startswith(path + "/") for k in self.keep):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.stat(follow_symlinks=False).st_dev != dev:
                            continue  # a mount point
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    pass

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def cleanup(self, pgid: int) -> int:
        """Kill the child's process group and every escaped process; return how many survive."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        survivors: list[int] = []
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
        self.scrub()
        return len(survivors)

    # -- children

    def _child_setup(self, out_w: int, res_w: int) -> None:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if self.cgroup is not None:  # before any candidate code: no fork can escape the cap
            with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        if res_w != 3:
            os.dup2(res_w, 3)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 3:
                try:
                    os.close(fd)
                except OSError:
                    pass
        lim = self.limits
        mib = 1 << 20
        for res, soft, hard in (
            (resource.RLIMIT_AS, lim["memory_mb"] * mib, lim["memory_mb"] * mib),
            (resource.RLIMIT_NPROC, lim["nproc"], lim["nproc"]),
            (resource.RLIMIT_FSIZE, lim["fsize_mb"] * mib, lim["fsize_mb"] * mib),
            (resource.RLIMIT_CPU, lim["cpu_s"], lim["cpu_s"] + 1),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            _, cur_hard = resource.getrlimit(res)
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(res, (soft, hard))
        if self.drop_uid is not None:
            uid = int(self.drop_uid)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if os.getuid() != uid or os.geteuid() != uid:
                raise RuntimeError("failed to drop privileges")
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
            line_buffering=True,
        )
        sys.stderr = sys.__stderr__ = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
            line_buffering=True,
        )

    def run_child(self, target, timeout: float, output_cap: int) -> dict:
        """Fork a child running ``target(result_fd)``; enforce the deadline and the caps.

        Returns a dict with ``header`` (the parsed first line of what the child
        wrote to fd 3, or None), ``payload`` (the bytes after it), ``reason``
        (None, "timeout", "nproc", "output_limit" or "result_limit"), ``status``/``rusage``
        from wait4, ``out_bytes``, ``tail`` and ``elapsed``.
        """
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        _flush_std()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # ------------------------------------------------ child
            code = EXIT_SETUP_FAILED
            try:
                self._child_setup(out_w, res_w)
                target(3)
                code = 0
            except BaseException:  # noqa: BLE001
                try:
                    os.write(2, ("fork server: child failed:\n" + traceback.format_exc()[-2000:]).encode())
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        # ------------------------------------------------------------------ parent
        os.close(out_w)
        os.close(res_w)
        deadline = t0 + timeout
        open_fds = {out_r, res_r}
        tail = bytearray()
        out_bytes = 0
        res = bytearray()
        reason = None
        status = rusage = None

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

        next_check = t0 + WATCHDOG_S
        while True:
            try:
                wpid, st, ru = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                wpid, st, ru = pid, 0, None
            if wpid == pid:
                status, rusage = st, ru
                break
            now = time.monotonic()
            if now >= deadline:
                reason = "timeout"
                break
            if now >= next_check:
                if self.at_task_limit():
                    reason = "nproc"
                    break
                next_check = now + WATCHDOG_S
            wait = min(deadline - now, next_check - now, 0.25)
            ready, _, _ = select.select(list(open_fds) + [self.wake_r], [], [], max(wait, 0.0))
            for fd in ready:
                if fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    consume(fd)
            if reason is not None:
                break
        elapsed = time.monotonic() - t0
        if status is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGKILL)  # in case it had not called setsid() yet
            except OSError:
                pass
            _, status, rusage = os.wait4(pid, 0)
        leftover = self.cleanup(pid)
        # Drain what is still buffered in the pipes (everyone holding them is dead now).
        drain_until = time.monotonic() + 0.5
        while open_fds and time.monotonic() < drain_until:
            ready, _, _ = select.select(list(open_fds), [], [], max(0.0, drain_until - time.monotonic()))
            if not ready:
                break
            for fd in ready:
                consume(fd)
        for fd in (out_r, res_r):
            os.close(fd)
        header = payload = None
        if res:
            line, _, rest = bytes(res).partition(b"\n")
            try:
                header = json.loads(line)
                if not isinstance(header, dict):
                    header = None
            except (ValueError, RecursionError):
                header = None
            payload = rest
        return {
            "header": header,
            "raw_result": bool(res),
            "payload": payload,
            "reason": reason,
            "status": status,
            "rusage": rusage,
            "elapsed": elapsed,
            "out_bytes": out_bytes,
            "tail": bytes(tail).decode("utf-8", "replace")[-TAIL_CHARS:],
            "leftover": leftover,
        }

    # -- what the children run

    def _candidate(self, source: str, fd: int) -> None:
        from elm.environment import InvalidProgram, to_jsonable

        payload = b""
        try:
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

    def _score(self, payload: bytes, fd: int) -> None:
        from elm.environment import InvalidProgram, to_jsonable, validate_evaluation

        try:
            output = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            header = {"kind": "invalid", "message": f"program output is not valid JSON: {exc}"}
        else:
            try:
                evaluation = validate_evaluation(self.env.score(output), self.space)
                info = to_jsonable(dict(evaluation.info))
                try:
                    json.dumps(info)
                except Exception as exc:  # noqa: BLE001
                    raise TypeError(f"Evaluation.info is not JSON-serialisable: {exc}") from None
                header = {
                    "kind": "ok",
                    "fitness": evaluation.fitness,
                    "descriptor": list(evaluation.descriptor),
                    "info": info,
                }
            except InvalidProgram as exc:
                header = {"kind": "invalid", "message": _shorten(str(exc) or "invalid program")}
            except MemoryError as exc:
                header = {"kind": "memory", "error": "environment score() ran out of memory: " + format_exception(exc)}
            except BaseException as exc:  # noqa: BLE001
                header = {"kind": "error", "error": "environment score() raised " + format_exception(exc)}
        _flush_std()
        _write_all(fd, json.dumps(header).encode("utf-8") + b"\n")
        os.close(fd)

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
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            if code == EXIT_SETUP_FAILED:
                return {"status": "error", "error": f"{what}: sandbox child set-up failed:\n{run['tail'][-1500:]}"}
            return {"status": "error", "error": f"{what} exited with code {code} before returning"}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            ru = run["rusage"]
            cpu = (ru.ru_utime + ru.ru_stime) if ru is not None else 0.0
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= self.limits["cpu_s"] - 0.5):
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
        run = self.run_child(lambda fd: self._candidate(source, fd), timeout, cap)
        resp["run_s"] = run["elapsed"]
        resp["stdout_tail"] = run["tail"]
        resp["output_truncated"] = run["out_bytes"] > cap
        resp["leftover"] = run["leftover"]
        resp.update(self._interpret(run, timeout, "program"))
        if resp["status"] != "ok":
            return resp
        payload = run["payload"] or b"null"
        run = None  # free the candidate's buffers before forking the scorer
        score = self.run_child(lambda fd: self._score(payload, fd), timeout, cap)
        resp["score_s"] = score["elapsed"]
        resp["leftover"] += score["leftover"]
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
    write_frame(proto_out, {
        "ready": True,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "startup_s": time.monotonic() - t0,
        "pids_cgroup": server.cgroup is not None,
        "max_procs": server.max_procs,
    })
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
        except BaseException as exc:  # noqa: BLE001 - the server must answer, then be recycled
            resp = {"id": req.get("id"), "status": "error",
                    "error": "fork server internal error: " + format_exception(exc), "leftover": -1}
        write_frame(proto_out, resp)


if __name__ == "__main__":
    sys.exit(main())
