"""Fixtures for the sandbox tests: one warm sandbox per backend per module (start-up costs ~1 s)."""

from __future__ import annotations

import os
import tempfile
import textwrap

import pytest

from elm.sandbox import EnvironmentSpec, SandboxLimits
from elm.types import EvalRequest

TOY = EnvironmentSpec("tests.sandbox.toy_env.ToyEnv")

# Small limits keep the suite fast: 1 s deadline, 1 GiB address space, 64 KiB of output.
LIMITS = SandboxLimits(
    timeout_s=1.0,
    cpu_s=5,
    memory_mb=1024,
    nproc=24,
    fsize_mb=256,
    output_bytes=64 * 1024,
    sandbox_memory_mb=2048,
    sandbox_pids=512,
    tmpfs_mb=32,
    recycle_after=500,
)

BACKENDS = ["process", pytest.param("gvisor", marks=pytest.mark.gvisor)]


def prog(body: str) -> str:
    """Dedent a program body."""
    return textwrap.dedent(body).strip() + "\n"


def run1(sb, source: str, rid: int = 1):
    (res,) = sb.evaluate([EvalRequest(rid, source)])
    return res


@pytest.fixture(scope="session")
def sandbox_root():
    """A private runtime root so the tests' janitor never touches other users' sandboxes."""
    with tempfile.TemporaryDirectory(prefix="elm-sbtest-") as d:
        yield d


def make(backend: str, root: str, **kw):
    from sandbox import make_sandbox

    limits = kw.pop("limits", LIMITS)
    workers = kw.pop("workers", 2)
    env = kw.pop("env", TOY)
    return make_sandbox(backend, env=env, limits=limits, workers=workers, runtime_dir=root)


@pytest.fixture(scope="module", params=BACKENDS)
def sb(request, sandbox_root):
    box = make(request.param, sandbox_root)
    yield box
    box.close()


@pytest.fixture(scope="module")
def gsb(sandbox_root):
    """A single-slot gVisor sandbox (so consecutive requests hit the same sandbox)."""
    if not (os.geteuid() == 0):
        pytest.skip("gvisor needs root")
    box = make("gvisor", sandbox_root, workers=1)
    yield box
    box.close()
