"""What the fork server's children run: the zygote's loop, a candidate, the scorer.

:class:`ChildProcesses` is a mixin of :class:`sandbox.forkserver.Server`: these methods
run in processes the zygote forks from the server's clean image, and read the
server's configuration (``env``, ``space``, limits, uids, ``cgroup``) from ``self``.
Standard library plus ``elm`` only.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import time
import traceback

from sandbox.confine import (
    CLONE_NEWNET,
    PR_SET_PDEATHSIG,
    close_all_but,
    flush_std,
    loopback_up,
    move_fds,
    new_stdio,
    prctl,
    unshare,
)
from sandbox.protocol import (
    CONTROL_FD,
    EXIT_SETUP_FAILED,
    EXITED,
    FORKED,
    MAX_FRAME,
    RESULT_CAP,
    RESULT_FD,
    SEED,
    exit_code,
    format_exception,
    read_blob,
    read_exact,
    shorten,
    write_all,
    write_frame,
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


class ChildProcesses:
    """The zygote, candidate and scorer processes of a :class:`~sandbox.forkserver.Server` (a mixin)."""

    def _zygote_main(self, sock: socket.socket) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        close_all_but({0, 1, 2, sock.fileno(), wake_r, wake_w})
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
                    sock.send(EXITED.pack(b"X", pid, status, ru.ru_utime + ru.ru_stime))
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
                sock.send(FORKED.pack(b"P", pid))

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
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: a uid change clears it

    def _child_main(self, ctl_r: int, out_w: int, res_w: int) -> None:
        code = EXIT_SETUP_FAILED
        try:
            # 1. Ahead of time (a spare): own session, pipes in place, nothing else of the server's.
            os.setsid()
            if self.namespaces_ok:
                # Fresh IPC/network/UTS namespaces, while still privileged: what an earlier
                # candidate planted there (a SysV semaphore, a message queue) is out of reach.
                unshare(self.unshare_flags)
                if self.unshare_flags & CLONE_NEWNET:
                    loopback_up()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            move_fds({1: out_w, 2: out_w, RESULT_FD: res_w, CONTROL_FD: ctl_r})
            new_stdio()
            _warm_up()
            # 2. Wait for the seed and the program. EOF: the server discarded this spare (or died).
            seed = read_exact(CONTROL_FD, SEED.size)
            source = read_blob(CONTROL_FD, MAX_FRAME) if seed is not None else None
            if source is not None:
                os.close(CONTROL_FD)
                # 3. Confine, then run it.
                self._confine(self.candidate_rlimits, self.drop_uid, join_cgroup=True)
                self._candidate(source.decode("utf-8", "surrogatepass"), SEED.unpack(seed)[0], RESULT_FD)
            code = 0
        except BaseException:  # noqa: BLE001
            try:
                os.write(2, ("fork server: child failed:\n" + traceback.format_exc()[-2000:]).encode())
            except BaseException:  # noqa: BLE001
                pass
        finally:
            os._exit(code)

    def _scorer_main(self, req_r: int, resp_w: int) -> None:
        """Score outputs until EOF, or until a scoring leaves doubt about this process's state."""
        code = EXIT_SETUP_FAILED
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # What score() prints goes nowhere: its result and traceback come back in the answer.
            null = os.open(os.devnull, os.O_RDWR)
            move_fds({1: null, 2: null, 3: req_r, 4: resp_w})
            new_stdio()
            self._confine(self.scorer_rlimits, self.scorer_uid, join_cgroup=False)
            code = 0
            while True:
                payload = read_blob(3, RESULT_CAP)
                if payload is None:
                    break
                header = self._score(payload)
                flush_std()
                write_frame(4, header)
                if header.get("respawn"):
                    break
        except BaseException:  # noqa: BLE001
            code = EXIT_SETUP_FAILED
        finally:
            os._exit(code)

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
                    "message": shorten(
                        f"program output is not JSON-serialisable: {type(exc).__name__}: {exc}"
                    ),
                }
        except InvalidProgram as exc:
            header = {"kind": "invalid", "message": shorten(str(exc) or "invalid program")}
        except MemoryError as exc:
            header = {"kind": "memory", "error": format_exception(exc)}
        except SystemExit as exc:
            header = {"kind": "exit", "code": exit_code(exc)}
        except BaseException as exc:  # noqa: BLE001
            header = {"kind": "error", "error": format_exception(exc)}
        flush_std()
        write_all(fd, json.dumps(header).encode("utf-8") + b"\n" + payload)
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
            return {"kind": "invalid", "respawn": True, "message": shorten(str(exc) or "invalid program")}
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
            return {"kind": "invalid", "message": shorten(str(exc) or "invalid program")}
        except MemoryError as exc:
            return {"kind": "memory", "respawn": True,
                    "error": "environment score() ran out of memory: " + format_exception(exc)}
        except BaseException as exc:  # noqa: BLE001
            return {"kind": "error", "respawn": True, "error": "environment score() raised " + format_exception(exc)}
