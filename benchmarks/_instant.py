"""Instant stand-ins for the pipeline benchmark: they cost ~nothing, so the driver is what is measured."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from elm.mutator import Mutator
from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits
from elm.types import EvalRequest, EvalResult, EvalStatus, Parent, Proposal, TaskContext


class InstantMutator(Mutator):
    """Returns each parent's program unchanged (with a comment), as fast as possible."""

    name = "instant"
    checks_syntax = True  # parents were evaluated ok, so they parse

    def __init__(self, name: str | None = None):
        pass

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int) -> list[Proposal]:
        return [Proposal(source=g[0].source, parent_ids=(g[0].id,), mutator="instant") for g in parents]


class NoopSandbox(Sandbox):
    """Scores without running anything: fitness and descriptor drawn from the evaluation id."""

    backend = "noop-benchmark"

    def __init__(self, *, env: EnvironmentSpec, limits: SandboxLimits, workers: int = 1, runtime_dir=None):
        space = env.build().descriptor_space
        self.lower, self.upper = np.array(space.lower), np.array(space.upper)

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[EvalResult]:
        rng = np.random.default_rng(requests[0].id if requests else 0)
        fit = rng.random(len(requests))
        desc = self.lower + rng.random((len(requests), len(self.lower))) * (self.upper - self.lower)
        return [EvalResult(id=r.id, status=EvalStatus.OK, fitness=float(f), descriptor=tuple(d.tolist()))
                for r, f, d in zip(requests, fit, desc)]

    def close(self) -> None:
        pass
