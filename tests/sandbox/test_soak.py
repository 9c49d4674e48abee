"""A short soak over the hostile-program corpus (benchmarks/soak_sandbox.py runs the 10,000-candidate
one by hand, with throughput figures and a fresh-worker control)."""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path

import pytest

from elm.sandbox import EnvironmentSpec, SandboxLimits
from elm.types import EvalRequest, EvalStatus
from sandbox.corpus import MARKER, Host, Kind, benign, hostile_kinds


def _benign_throughput(box, n: int, start_id: int) -> tuple[float, int]:
    """(benign candidates/s, results that are not ok with their exact fitness) of one benign batch."""
    progs = [benign(i) for i in range(n)]
    t0 = time.perf_counter()
    results = box.evaluate([EvalRequest(start_id + i, src) for i, (src, _) in enumerate(progs)])
    bad = sum(1 for r, (_, want) in zip(results, progs) if r.status is not EvalStatus.OK or r.fitness != want)
    return n / (time.perf_counter() - t0), bad


@pytest.mark.slow
@pytest.mark.gvisor
def test_short_soak(sandbox_root):
    """Every hostile kind twice among benign programs, in shuffled batches through one worker:
    no candidate hangs, nothing gets out, every status is one its kind allows, and the worker
    still runs benign programs at more than half its start throughput afterwards."""
    from sandbox import GVisorSandbox
    from sandbox.gvisor_backend import python_binds

    limits = SandboxLimits(timeout_s=1.0, cpu_s=4, memory_mb=1024, sandbox_memory_mb=2048)
    host = Host()
    keep = tuple(os.path.normpath(p) for p in python_binds() if p.startswith(("/tmp/", "/dev/shm/")))
    kinds = hostile_kinds(host, keep)
    plan: list[Kind | tuple[str, float]] = [*kinds, *kinds] + [benign(i) for i in range(150)]
    random.Random(1).shuffle(plan)
    box = GVisorSandbox(env=EnvironmentSpec("tests.sandbox.toy_env.ToyEnv"), limits=limits, workers=2,
                        runtime_dir=sandbox_root)
    unexpected: collections.Counter = collections.Counter()
    escapes: collections.Counter = collections.Counter()
    try:
        start, bad_start = _benign_throughput(box, 60, 10_000)
        for first in range(0, len(plan), 50):
            batch = plan[first:first + 50]
            results = box.evaluate([EvalRequest(first + j, p.source if isinstance(p, Kind) else p[0])
                                    for j, p in enumerate(batch)])
            for p, r in zip(batch, results):
                assert "no answer within the host backstop" not in (r.error or ""), f"hung: {p}"
                if isinstance(p, Kind):
                    if r.status not in p.statuses:
                        unexpected[f"{p.name}: {r.status} {(r.error or '')[:200]}"] += 1
                    elif p.escaped(r):
                        escapes[f"{p.name}: fitness {r.fitness}, output {r.stdout_tail[-200:]!r}"] += 1
                elif r.status is not EvalStatus.OK or r.fitness != p[1]:
                    unexpected[f"benign: {r.status} (fitness {r.fitness}, want {p[1]})"] += 1
        end, bad_end = _benign_throughput(box, 60, 20_000)
        assert host.connections == 0, "a candidate reached the host listener"
        assert host.changed() == [], "a candidate changed host files"
        forged = [p.name for p in Path(box._dir).rglob("*.log") if MARKER in p.read_bytes()]
        assert forged == [], f"forged bytes in host logs {forged}"
    finally:
        box.close()
        host.close()
    assert escapes == {}
    assert unexpected == {}
    assert bad_start == bad_end == 0
    # The 10,000-candidate soak holds the end to >= 90 % of the start; 60 candidates on a shared
    # machine are too few for that, but a leak that halves throughput still shows.
    assert end / start > 0.5, (start, end)
