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

import importlib
from typing import TYPE_CHECKING

# Eager (standard library only): ``sandbox.janitor`` is also the submodule's name, and a lazy
# import would leave the attribute bound to the module once a backend had imported it.
from .janitor import janitor

if TYPE_CHECKING:
    from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits

__all__ = ["GVisorSandbox", "ProcessSandbox", "make_sandbox", "check_gvisor", "janitor"]

#: where each public name lives; imported on first use, so that the fork server (which imports
#: sandbox.protocol and friends inside the sandbox) does not load the host-side backends
_LAZY = {"GVisorSandbox": "gvisor_backend", "check_gvisor": "gvisor_backend", "ProcessSandbox": "process_backend"}
_BACKENDS = {"gvisor": "GVisorSandbox", "process": "ProcessSandbox"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_sandbox(
    backend: str,
    *,
    env: EnvironmentSpec,
    limits: SandboxLimits,
    workers: int,
    runtime_dir: str | None = None,
) -> Sandbox:
    """Build the sandbox named ``backend`` ("gvisor" or "process")."""
    name = _BACKENDS.get(str(backend).strip().lower())
    if name is None:
        raise ValueError(
            f"unknown sandbox backend {backend!r}; choose one of: "
            + ", ".join(repr(name) for name in _BACKENDS)
        )
    return __getattr__(name)(env=env, limits=limits, workers=workers, runtime_dir=runtime_dir)
