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

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from elm.types import EvalRequest, EvalResult


class SandboxUnavailable(RuntimeError):
    """The sandbox backend cannot run on this machine (message says how to fix it)."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """How to rebuild an environment inside a sandbox: import path plus keyword arguments.

    ``target`` is ``"package.module.ClassName"``; ``kwargs`` must be plain
    JSON-serialisable data (it is sent to the sandbox as JSON).
    """

    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "EnvironmentSpec":
        """Build from a resolved Hydra node such as ``{"_target_": "...", "n": 26}``."""
        if "_target_" not in cfg:
            raise ValueError(
                "environment config has no '_target_' key; it must name the Environment "
                "class, e.g. _target_: environments.circle_packing.CirclePacking"
            )
        kwargs = {k: v for k, v in cfg.items() if not str(k).startswith("_")}
        return cls(target=str(cfg["_target_"]), kwargs=kwargs)

    def build(self):
        """Import ``target`` and instantiate it with ``kwargs``; errors name the target."""
        from elm.environment import Environment

        module_name, _, attr = self.target.rpartition(".")
        if not module_name:
            raise ValueError(f"environment _target_ {self.target!r} must be 'module.ClassName'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(
                f"cannot import module {module_name!r} for environment {self.target!r}: {exc}. "
                "Is the module on PYTHONPATH (run from its directory, or pip install it)?"
            ) from exc
        cls = getattr(module, attr, None)
        if cls is None:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from _target_ {self.target!r})")
        env = cls(**dict(self.kwargs))
        if not isinstance(env, Environment):
            raise TypeError(
                f"{self.target} built a {type(env).__name__}, which is not an elm.Environment subclass"
            )
        return env


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to every candidate (and, for gVisor, to every sandbox).

    Units: seconds, MiB, bytes as named. Defaults and their reasoning are in
    ``conf/sandbox/*.yaml`` and ``docs/sandbox.md``.
    """

    timeout_s: float = 10.0  # wall clock per candidate, enforced inside (killpg) + host backstop
    cpu_s: int = 20  # RLIMIT_CPU per candidate
    memory_mb: int = 2048  # RLIMIT_AS per candidate: a bomb becomes MemoryError, not a dead sandbox
    nproc: int = 24  # tasks (processes + threads) per candidate: fork() fails at the cap, which kills it
    fsize_mb: int = 64  # RLIMIT_FSIZE per candidate
    output_bytes: int = 1 << 20  # stdout+stderr captured per candidate, beyond it: output_limit
    sandbox_memory_mb: int = 4096  # cgroup memory limit per sandbox (backstop; gVisor only)
    sandbox_pids: int = 512  # host pids cgroup per sandbox (gVisor only; idle: ~85-110 host tasks)
    tmpfs_mb: int = 64  # size of the sandbox's /tmp
    recycle_after: int = 500  # replace a sandbox after this many candidates

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "nproc", "fsize_mb", "output_bytes",
                     "sandbox_memory_mb", "sandbox_pids", "tmpfs_mb", "recycle_after"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {value!r}")


class Sandbox(ABC):
    """Evaluates programs of one environment in isolation; see the module docstring."""

    #: short backend name stored with each run ("gvisor", "process")
    backend: ClassVar[str] = "sandbox"
    #: True when candidates can reach the host (the run log says so loudly)
    unsafe: ClassVar[bool] = False

    @abstractmethod
    def evaluate(self, requests: Sequence[EvalRequest]) -> list[EvalResult]:
        """Evaluate a batch; one result per request, in order; candidate faults are results."""

    @abstractmethod
    def close(self) -> None:
        """Stop every sandbox process this object started. Idempotent."""

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
