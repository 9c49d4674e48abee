"""Instant stand-ins for the pipeline benchmark: they cost ~nothing, so the driver is what is measured."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from elm.mutator import Mutator
from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits
from elm.types import EvalRequest, EvalResult, EvalStatus, Parent, Proposal, TaskContext


class InstantMutator(Mutator):
    """Returns each parent's program with its last line set to ``_v = <a number unique to the child>``
    (so duplicate detection lets it through, and programs do not grow), as fast as possible.

    ``quoted=True``: the child is the parent's text as one string constant (``_program = '...'``)
    and the marker line: the same size to store and ship, but a two-statement syntax tree, so its
    canonical key (duplicate detection, computed in this actor) costs ~0.05 ms instead of the
    1.5-3 ms of a 40-line program, and the actors stay faster than the driver on a 2-core machine.
    """

    name = "instant"
    checks_syntax = True  # parents were evaluated ok, and the marker line parses

    def __init__(self, name: str | None = None, quoted: bool = False):
        if name:
            self.name = name
        self.quoted = quoted

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int) -> list[Proposal]:
        out = []
        for i, g in enumerate(parents):
            body = g[0].source.rstrip("\n")
            if body.rsplit("\n", 1)[-1].startswith("_v = "):
                body = body.rsplit("\n", 1)[0]
            if self.quoted and not body.startswith("_program = "):
                body = f"_program = {body!r}"
            out.append(Proposal(source=f"{body}\n_v = {seed % 10**12 * 1000 + i}\n", parent_ids=(g[0].id,),
                                mutator=self.name))
        return out


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
