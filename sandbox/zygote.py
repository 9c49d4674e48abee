"""The server's side of the zygote: asking it to fork, hearing about exits, the spare and the scorer.

:class:`ZygoteLink` is a mixin of :class:`sandbox.forkserver.Server` (it uses the
server's ``zsock``, ``_pending``, ``_exits``, ``spare``, ``scorer``...). Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
import traceback

from sandbox.confine import flush_std
from sandbox.protocol import EXIT_SETUP_FAILED, EXITED, FORKED

#: longest the server waits for the zygote to answer a fork or report a killed child's exit
ZYGOTE_TIMEOUT_S = 30.0


class ZygoteLost(RuntimeError):
    """The zygote died or stopped answering: the server cannot fork any more (the host recycles it)."""


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


class ZygoteLink:
    """The server's dealings with its zygote and the helper processes it forks (a mixin)."""

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
        flush_std()
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
            _, pid = FORKED.unpack(data)
            self._pending.popleft().pid = pid
        elif data[:1] == b"X":
            _, pid, status, cpu = EXITED.unpack(data)
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

    def _fork_child(self) -> _Proc:
        """Ask the zygote for a candidate child that waits, unconfined, for its program (``_child_main``)."""
        (ctl_r, ctl_w), (out_r, out_w), (res_r, res_w) = os.pipe(), os.pipe(), os.pipe()
        proc = _Proc({"ctl_w": ctl_w, "out_r": out_r, "res_r": res_r})
        return self._request_fork(b"C", [ctl_r, out_w, res_w], proc)

    def _spawn_scorer(self) -> None:
        (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
        os.set_blocking(req_w, False)
        os.set_blocking(resp_r, False)
        self.scorer = self._request_fork(b"S", [req_r, resp_w], _Proc({"req_w": req_w, "resp_r": resp_r}))
