"""The Sandbox interface: run evaluation requests under limits, return structured results.

Implementations live in the top-level ``sandbox`` package (gVisor by default,
``process`` as an explicitly unsafe fallback). The contract, shared by all of
them and checked by ``tests/sandbox/test_contract.py``:

* ``evaluate(requests)`` returns exactly one :class:`~elm.types.EvalResult` per
  request, in request order, and never raises because of a candidate's fault
  (an infinite loop, a crash, a memory bomb, garbage output...).
* It raises only for faults of the sandbox itself that it cannot heal, e.g.
  :class:`SandboxUnavailable` at construction when ``runsc`` is missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from elm.plugins import PluginSpec
from elm.types import EvalRequest, EvalResult


class SandboxUnavailable(RuntimeError):
    """The sandbox backend cannot run on this machine (message says how to fix it)."""


@dataclass(frozen=True)
class EnvironmentSpec(PluginSpec):
    """How to rebuild an environment inside a sandbox: import path plus keyword arguments.

    ``target`` is ``"package.module.ClassName"``; ``kwargs`` must be plain
    JSON-serialisable data (it is sent to the sandbox as JSON).
    """

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], *, what: str = "environment") -> EnvironmentSpec:
        """Build from a resolved config node such as ``{"_target_": "...", "n": 26}``."""
        spec = PluginSpec.from_config(cfg, what=what)
        return cls(target=spec.target, kwargs=spec.kwargs)

    def build(self, base: type | None = None, *, what: str = "environment"):  # type: ignore[override]
        """Import ``target`` and instantiate it with ``kwargs``; errors name the target."""
        from elm.environment import Environment

        return super().build(base or Environment, what=what)


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to every candidate (and, for gVisor, to every sandbox): the one place of their defaults.

    Units: seconds, MiB, bytes as named. Every value must be > 0. ``docs/sandbox.md`` has the
    measurements behind each default.
    """

    #: wall clock per candidate, killed inside the sandbox; scoring gets its own timeout_s; host
    #: backstop (sandbox replaced) at 2 * timeout_s + 3 s
    timeout_s: float = 10.0
    #: RLIMIT_CPU (soft; hard = +1) per candidate process, all its threads: a backstop at 2 threads x
    #: timeout_s; the wall-clock deadline normally comes first. The persistent scorer has none (CPU
    #: time is cumulative): each scoring has its own timeout_s
    cpu_s: int = 20
    #: RLIMIT_AS per candidate process and for the scorer: a memory bomb becomes MemoryError (status
    #: memory), the sandbox survives
    memory_mb: int = 2048
    #: tasks (processes + threads) per candidate, kernel-enforced by an in-sandbox pids cgroup (gVisor
    #: ignores RLIMIT_NPROC); a candidate at its cap is killed (error). Each task costs ~5-13 host
    #: tasks, so it must stay <= (sandbox_pids - 100) / 16
    nproc: int = 24
    #: RLIMIT_FSIZE: largest file a candidate may write
    fsize_mb: int = 64
    #: stdout+stderr per candidate; beyond it the candidate is killed: output_limit (a return value
    #: beyond 64 MiB too; fixed)
    output_bytes: int = 1 << 20
    #: host memory cgroup per sandbox (= its swap limit), gVisor only: a backstop; the host replaces
    #: the sandbox at 90 % while a candidate runs, at 50 % after one
    sandbox_memory_mb: int = 4096
    #: host pids cgroup per sandbox, gVisor only: a backstop; idle ~85-110 host tasks (measured);
    #: replaced at 80 % while a candidate runs, at 50 % after one
    sandbox_pids: int = 512
    #: sized /tmp (runsc's default /tmp is unbounded and memory-backed)
    tmpfs_mb: int = 64
    #: fresh sandbox after this many candidates (bounds slow leaks; ~1 s in the background)
    recycle_after: int = 500

    def __post_init__(self) -> None:
        for f in fields(SandboxLimits):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"sandbox limit {f.name} must be a number > 0, got {value!r}")


class Sandbox(ABC):
    """Evaluates programs of one environment in isolation; see the module docstring."""

    #: short backend name stored with each run ("gvisor", "process")
    backend: ClassVar[str] = "sandbox"
    #: True when candidates can reach the host (the run log says so loudly)
    unsafe: ClassVar[bool] = False
    #: kinds of state one candidate can leave for the next that this backend does not isolate
    #: (the run log lists them; docs/sandbox.md has the inventory)
    isolation_gaps: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`SandboxUnavailable` (saying how to fix it) if this backend cannot run here.

        Called before a run starts anything; the default has nothing to check.
        """

    @abstractmethod
    def evaluate(self, requests: Sequence[EvalRequest]) -> list[EvalResult]:
        """Evaluate a batch; one result per request, in order; candidate faults are results."""

    @abstractmethod
    def close(self) -> None:
        """Stop every sandbox process this object started. Idempotent."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
