"""Host side shared by both backends: K fork-server slots, batch spreading, healing.

A slot is one fork server (``sandbox/forkserver.py``) reached through a
subprocess's stdin/stdout pipes: for gVisor a ``runsc exec`` client attached to
a server inside a warm sandbox, for the process backend a plain host
subprocess. :class:`ForkServerPool` spreads a batch over its slots with one
host thread per slot and turns every failure of a slot (EOF, broken pipe, no
answer before the backstop deadline) into a per-candidate result, then replaces
the slot and carries on with the rest of the batch.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits, SandboxUnavailable
from elm.types import EvalRequest, EvalResult, EvalStatus

from .protocol import ERROR_CAP, HEADER, MAX_RESPONSE, TAIL_CHARS

log = logging.getLogger("sandbox")

STARTUP_TIMEOUT_S = 120.0
#: extra seconds the host waits beyond the in-sandbox deadlines before it declares a slot lost
BACKSTOP_SLACK_S = 3.0
FORKSERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkserver.py")


#: every pool not yet closed; closed at interpreter exit (a forgotten close() leaks nothing)
_live: weakref.WeakSet[ForkServerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_live):
        try:
            pool.close()
        except Exception:  # noqa: BLE001
            pass


class EnvironmentLoadError(ValueError):
    """The environment could not be imported or built inside the sandbox (a configuration error)."""


class SlotLost(Exception):
    """The fork server of a slot stopped answering (``timed_out``: the backstop expired).

    ``status`` set: the host guard stopped the sandbox because the candidate was
    about to exhaust a sandbox-wide backstop (the candidate's fault, e.g. a fork bomb).
    """

    def __init__(self, message: str, *, timed_out: bool = False, status: EvalStatus | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.status = status


#: how often the host guard looks at the sandbox's cgroups while a candidate runs
GUARD_INTERVAL_S = 0.02


def thread_env() -> dict[str, str]:
    """One BLAS/OpenMP thread per candidate: K slots already use the K cores."""
    return {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class Slot:
    """One fork server. ``proc`` is the Popen whose pipes reach it; ``handle`` is backend data."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.proc = None
        self.handle: Any = None
        self.log_path: str | None = None
        self.served = 0
        self.broken: str | None = None
        #: a background (re)start in progress (a Future), waited for before the slot's next request
        self.pending = None
        self.buf = bytearray()
        self.info: dict = {}

    # -- framing over the Popen pipes

    def send(self, obj: dict, deadline: float) -> None:
        body = json.dumps(obj).encode("utf-8")
        data = memoryview(HEADER.pack(len(body)) + body)
        fd = self.proc.stdin.fileno()
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SlotLost("fork server did not accept the request in time", timed_out=True)
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                n = os.write(fd, data)
            except (BrokenPipeError, ConnectionResetError, OSError) as exc:
                raise SlotLost(f"fork server pipe closed ({exc.__class__.__name__})") from None
            data = data[n:]

    def recv(self, deadline: float, guard=None) -> dict:
        """Read one message; ``guard()`` is called every GUARD_INTERVAL_S and may raise SlotLost."""
        fd = self.proc.stdout.fileno()
        while True:
            if len(self.buf) >= HEADER.size:
                (length,) = HEADER.unpack_from(self.buf)
                if length > MAX_RESPONSE:
                    raise SlotLost(f"fork server sent an oversized frame ({length} bytes)")
                if len(self.buf) >= HEADER.size + length:
                    body = bytes(self.buf[HEADER.size:HEADER.size + length])
                    del self.buf[:HEADER.size + length]
                    try:
                        msg = json.loads(body)
                    except ValueError as exc:
                        raise SlotLost(f"fork server sent malformed JSON: {exc}") from None
                    if not isinstance(msg, dict):
                        raise SlotLost("fork server sent a non-object message")
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SlotLost("no answer from the fork server before the backstop deadline", timed_out=True)
            if guard is not None:
                remaining = min(remaining, GUARD_INTERVAL_S)
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                if guard is not None:
                    guard()
                continue
            try:
                data = os.read(fd, 1 << 16)
            except OSError as exc:
                raise SlotLost(f"fork server pipe error: {exc}") from None
            if not data:
                raise SlotLost("fork server closed its pipe (the sandbox died)")
            self.buf += data

    def stderr_tail(self, chars: int = 3000) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class ForkServerPool(Sandbox):
    """Base class of both backends; subclasses implement :meth:`_spawn` and :meth:`_teardown`."""

    def __init__(
        self,
        *,
        env: EnvironmentSpec,
        limits: SandboxLimits,
        workers: int = 2,
        runtime_dir: str | None = None,
    ) -> None:
        if not isinstance(env, EnvironmentSpec):
            raise TypeError(f"env must be an elm.sandbox.EnvironmentSpec, got {type(env).__name__}")
        if not isinstance(limits, SandboxLimits):
            raise TypeError(f"limits must be an elm.sandbox.SandboxLimits, got {type(limits).__name__}")
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        try:
            json.dumps(dict(env.kwargs))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"environment kwargs for {env.target!r} must be JSON-serialisable: {exc}") from None
        self.env_spec = env
        self.limits = limits
        self.workers = int(workers)
        self.runtime_dir = runtime_dir
        self._closed = False
        self._slots: list[Slot] = []
        self._bg_lock = threading.Lock()
        self._bg_threads: list[threading.Thread] = []
        self._executor: ThreadPoolExecutor | None = None
        self._starter: ThreadPoolExecutor | None = None
        #: one batch at a time per object (concurrent callers queue up here)
        self._eval_lock = threading.Lock()
        _live.add(self)

    # -- hooks for the backends

    def _spawn(self, slot: Slot) -> None:
        """Start the process behind ``slot`` (set ``slot.proc``, ``slot.handle``, ``slot.log_path``)."""
        raise NotImplementedError

    def _teardown(self, proc, handle) -> None:
        """Stop a slot's process(es); called from a background thread, must not raise."""
        raise NotImplementedError

    def _server_config(self, slot: Slot) -> dict:
        return {
            "target": self.env_spec.target,
            "kwargs": dict(self.env_spec.kwargs),
            "limits": asdict(self.limits),
            "pidns": False,
            "drop_uid": None,
        }

    def _load_error_hint(self) -> str:
        return ""

    # -- start-up

    def _start_all(self) -> None:
        """Start every slot in parallel; on any failure stop them all and raise."""
        self._slots = [Slot(i) for i in range(self.workers)]
        errors: list[BaseException] = []

        def start(slot: Slot) -> None:
            try:
                self._start_slot(slot)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,), daemon=True) for s in self._slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.close()
            # Prefer the configuration error (it is the same in every slot).
            for exc in errors:
                if isinstance(exc, EnvironmentLoadError):
                    raise exc
            raise errors[0]
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self.backend}-slot")
        self._starter = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self.backend}-start")

    def _start_slot(self, slot: Slot) -> None:
        slot.generation += 1
        slot.served = 0
        slot.buf = bytearray()
        self._spawn(slot)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            slot.send(self._server_config(slot), deadline)
            msg = slot.recv(deadline)
        except SlotLost as exc:
            tail = slot.stderr_tail()
            self._retire(slot)
            raise SandboxUnavailable(
                f"{self.backend} sandbox: the fork server for environment {self.env_spec.target!r} "
                f"did not start ({exc}).\nIts stderr ends with:\n{tail}"
            ) from None
        if not msg.get("ready"):
            self._retire(slot)
            raise EnvironmentLoadError(
                f"environment {self.env_spec.target!r} (kwargs {dict(self.env_spec.kwargs)!r}) failed to "
                f"load inside the {self.backend} sandbox:\n{msg.get('error', '(no error text)')}"
                f"{self._load_error_hint()}"
            )
        slot.info = msg
        slot.broken = None
        log.debug("%s slot %d ready (generation %d): %s", self.backend, slot.index, slot.generation, msg)

    # -- clean-up

    def _retire(self, slot: Slot) -> None:
        """Detach the slot's process(es) and stop them in a background thread."""
        proc, handle = slot.proc, slot.handle
        slot.proc = slot.handle = None
        slot.buf = bytearray()
        if proc is None and handle is None:
            return
        t = threading.Thread(target=self._teardown, args=(proc, handle), daemon=True,
                             name=f"{self.backend}-teardown")
        with self._bg_lock:
            self._bg_threads = [x for x in self._bg_threads if x.is_alive()]
            self._bg_threads.append(t)
        t.start()

    def _start_with_retry(self, slot: Slot) -> None:
        for attempt in range(2):
            try:
                self._start_slot(slot)
                return
            except Exception as exc:  # noqa: BLE001
                slot.broken = str(exc)
                log.error("%s slot %d: start %d failed: %s", self.backend, slot.index, attempt + 1, exc)

    def _replace(self, slot: Slot, why: str) -> None:
        """Retire the slot's sandbox now and start a fresh one in the background."""
        log.info("%s slot %d: replacing its sandbox (%s)", self.backend, slot.index, why)
        self._retire(slot)
        if self._closed or self._starter is None:
            return
        slot.pending = self._starter.submit(self._start_with_retry, slot)

    def _ensure_ready(self, slot: Slot) -> bool:
        """Wait for a pending restart; restart a broken slot; True when the slot can take work."""
        if slot.pending is not None:
            try:
                slot.pending.result()
            finally:
                slot.pending = None
        if slot.proc is None and not self._closed:
            self._retire(slot)
            self._start_with_retry(slot)
        return slot.proc is not None

    def close(self) -> None:
        # Wait (bounded by the backstops) for a batch running in another thread to finish.
        acquired = self._eval_lock.acquire(timeout=self.backstop_s * 4 + STARTUP_TIMEOUT_S)
        try:
            self._close()
        finally:
            if acquired:
                self._eval_lock.release()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        for slot in self._slots:
            if slot.pending is not None:
                try:
                    slot.pending.result(STARTUP_TIMEOUT_S)
                except Exception:  # noqa: BLE001
                    pass
                slot.pending = None
            self._retire(slot)
        with self._bg_lock:
            threads = list(self._bg_threads)
        for t in threads:
            t.join(60)
        for pool in (self._executor, self._starter):
            if pool is not None:
                pool.shutdown(wait=True)
        self._executor = self._starter = None
        self._after_close()

    def _after_close(self) -> None:
        pass

    # -- evaluation

    @property
    def backstop_s(self) -> float:
        # candidate deadline + scoring deadline (each timeout_s) + clean-up slack
        return 2 * self.limits.timeout_s + BACKSTOP_SLACK_S

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[EvalResult]:
        requests = list(requests)
        with self._eval_lock:
            if self._closed:
                raise RuntimeError(f"{type(self).__name__} is closed")
            if not requests:
                return []
            return self._evaluate_batch(requests)

    def _evaluate_batch(self, requests: list[EvalRequest]) -> list[EvalResult]:
        results: list[EvalResult | None] = [None] * len(requests)
        queue = deque(enumerate(requests))
        lock = threading.Lock()

        def drain(slot: Slot) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    i, req = queue.popleft()
                if not self._ensure_ready(slot):
                    with lock:
                        queue.appendleft((i, req))  # leave it to the other slots
                    return
                results[i] = self._evaluate_one(slot, req)

        futures = [self._executor.submit(drain, s) for s in self._slots]
        for f in futures:
            f.result()
        if all(r is None for r in results):
            reasons = "; ".join(sorted({s.broken or "?" for s in self._slots}))
            raise SandboxUnavailable(f"every {self.backend} sandbox slot failed to start: {reasons}")
        out: list[EvalResult] = []
        for req, res in zip(requests, results):
            if res is None:  # every slot broke and could not be restarted
                res = EvalResult(id=req.id, status=EvalStatus.SANDBOX_LOST,
                                 error="no sandbox left to run it (all slots failed to restart)")
            out.append(res)
        return out

    def _evaluate_one(self, slot: Slot, req: EvalRequest) -> EvalResult:
        t0 = time.monotonic()
        deadline = t0 + self.backstop_s
        try:
            slot.send({"id": req.id, "source": req.source, "timeout": self.limits.timeout_s, "seed": req.seed},
                      deadline)
            resp = slot.recv(deadline, guard=self._guard(slot))
            if resp.get("id") != req.id:
                raise SlotLost(f"fork server answered for id {resp.get('id')!r} instead of {req.id!r}")
        except SlotLost as exc:
            total = time.monotonic() - t0
            if exc.status is not None:
                result = EvalResult(id=req.id, status=exc.status, total_s=total, error=f"{exc}; sandbox replaced")
            elif exc.timed_out:
                result = EvalResult(
                    id=req.id, status=EvalStatus.TIMEOUT, total_s=total,
                    error=f"no answer within the host backstop of {self.backstop_s:g} s; sandbox replaced",
                )
            else:
                tail = slot.stderr_tail(1500).strip()
                result = EvalResult(
                    id=req.id, status=EvalStatus.SANDBOX_LOST, total_s=total,
                    error=f"sandbox lost: {exc}; replaced" + (f"\nserver stderr: {tail}" if tail else ""),
                )
            self._replace(slot, str(exc))
            return result
        result = self._to_result(req, resp, time.monotonic() - t0)
        slot.served += 1
        leftover = resp.get("leftover", 0)
        if leftover and leftover < 0:
            self._replace(slot, f"the fork server could not go on after candidate {req.id}: {result.error}")
        elif leftover:
            self._replace(slot, f"{leftover} process(es) survived the clean-up after candidate {req.id}")
        elif resp.get("leftover_files"):
            self._replace(slot, f"the clean-up after candidate {req.id} could not remove "
                                f"{', '.join(map(str, resp['leftover_files']))}")
        elif slot.served >= self.limits.recycle_after:
            self._replace(slot, f"recycled after {slot.served} candidates")
        else:
            problem = self._health_problem(slot)
            if problem:
                self._replace(slot, problem)
        return result

    def _health_problem(self, slot: Slot) -> str | None:
        """Backend hook: a reason to recycle the slot after a candidate, or None."""
        return None

    def _guard(self, slot: Slot):
        """Backend hook: a callable run while waiting for an answer (raises SlotLost), or None."""
        return None

    @staticmethod
    def _to_result(req: EvalRequest, resp: dict, total: float) -> EvalResult:
        def num(key: str) -> float:
            try:
                v = float(resp.get(key) or 0.0)
            except (TypeError, ValueError):
                return 0.0
            return v if math.isfinite(v) else 0.0

        try:
            status = EvalStatus(resp.get("status"))
        except ValueError:
            status = EvalStatus.ERROR
        error = resp.get("error")
        error = None if error is None else str(error)[:ERROR_CAP]
        fitness = descriptor = None
        info = resp.get("info") if isinstance(resp.get("info"), dict) else {}
        if status is EvalStatus.OK:
            try:
                fitness = float(resp["fitness"])
                descriptor = tuple(float(v) for v in resp["descriptor"])
                if not math.isfinite(fitness) or not all(math.isfinite(v) for v in descriptor):
                    raise ValueError("non-finite")
            except (KeyError, TypeError, ValueError):
                status, fitness, descriptor = EvalStatus.ERROR, None, None
                error = "fork server returned status ok without a valid fitness/descriptor"
        return EvalResult(
            id=req.id,
            status=status,
            fitness=fitness,
            descriptor=descriptor,
            info=info if status is EvalStatus.OK else {},
            error=error,
            stdout_tail=str(resp.get("stdout_tail") or "")[-TAIL_CHARS:],
            output_truncated=bool(resp.get("output_truncated")),
            run_s=num("run_s"),
            score_s=num("score_s"),
            total_s=total,
        )
