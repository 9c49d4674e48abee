"""Evaluation workers for candidate programs, which are treated as hostile.

* :class:`GVisorSandbox` (default, ``sandbox=gvisor``): K warm gVisor sandboxes,
  each with a fork server that runs every candidate in a fresh child under
  rlimits as an unprivileged user, scores it in a second clean child, and
  enforces a wall-clock deadline.
* :class:`ProcessSandbox` (``sandbox=process``): the same fork server as a plain
  host subprocess. **Unsafe**: for trusted programs or machines without gVisor.

See ``docs/sandbox.md`` for what is isolated, every limit and its default.
"""

from __future__ import annotations

from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits

from .gvisor_backend import GVisorSandbox, check_gvisor
from .janitor import janitor
from .process_backend import ProcessSandbox

__all__ = ["GVisorSandbox", "ProcessSandbox", "make_sandbox", "check_gvisor", "janitor"]

_BACKENDS = {"gvisor": GVisorSandbox, "process": ProcessSandbox}


def make_sandbox(
    backend: str,
    *,
    env: EnvironmentSpec,
    limits: SandboxLimits,
    workers: int,
    runtime_dir: str | None = None,
) -> Sandbox:
    """Build the sandbox named ``backend`` ("gvisor" or "process")."""
    cls = _BACKENDS.get(str(backend).strip().lower())
    if cls is None:
        raise ValueError(
            f"unknown sandbox backend {backend!r}; choose one of: "
            + ", ".join(repr(name) for name in _BACKENDS)
        )
    return cls(env=env, limits=limits, workers=workers, runtime_dir=runtime_dir)
