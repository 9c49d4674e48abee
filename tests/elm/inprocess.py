"""Test doubles for loop tests: an in-process 'sandbox' and mutators that misbehave on purpose.

The in-process sandbox runs env.execute/score in the evaluator actor itself.
It is only for trusted test programs; the real backends are tested in
tests/sandbox and end to end in tests/test_cli.py.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace

from elm.environment import InvalidProgram, roundtrip_json, seed_randomness, validate_evaluation
from elm.mutator import Mutator
from elm.sandbox import EnvironmentSpec, Sandbox, SandboxLimits
from elm.types import EvalRequest, EvalResult, EvalStatus, Parent, Proposal, TaskContext, candidate_seed


class InProcessSandbox(Sandbox):
    backend = "inprocess-test"
    unsafe = True

    def __init__(self, *, env: EnvironmentSpec, limits: SandboxLimits, workers: int = 1, runtime_dir=None):
        self.env = env.build()

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[EvalResult]:
        out = []
        for req in requests:
            start = time.perf_counter()
            try:
                seed_randomness(candidate_seed(req.seed, req.source))  # as the real sandboxes do
                ev = validate_evaluation(self.env.score(roundtrip_json(self.env.execute(req.source))),
                                         self.env.descriptor_space)
                out.append(EvalResult(id=req.id, status=EvalStatus.OK, fitness=ev.fitness,
                                      descriptor=ev.descriptor, info=dict(ev.info),
                                      total_s=time.perf_counter() - start))
            except InvalidProgram as exc:
                out.append(EvalResult(id=req.id, status=EvalStatus.INVALID, error=str(exc)))
            except Exception:  # noqa: BLE001 - a candidate's fault is a result
                out.append(EvalResult(id=req.id, status=EvalStatus.ERROR,
                                      error=traceback.format_exc(limit=2)[-500:]))
        return out

    def close(self) -> None:
        pass


class CrashOnceSandbox(InProcessSandbox):
    """Kills its own worker process once: when ``<runtime_dir>/crash-once`` exists (it deletes it first)."""

    def __init__(self, *, env, limits, workers=1, runtime_dir=None):
        super().__init__(env=env, limits=limits, workers=workers)
        self.marker = os.path.join(runtime_dir, "crash-once") if runtime_dir else None

    def evaluate(self, requests):
        if self.marker and os.path.exists(self.marker):
            os.remove(self.marker)
            os._exit(1)
        return super().evaluate(requests)


class WrongCountMutator(Mutator):
    name = "wrong_count"

    def __init__(self, name: str | None = None):
        pass

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int) -> list[Proposal]:
        return []


class CrashAlwaysSandbox(InProcessSandbox):
    """Kills its worker on every batch except the seeds (first id 0) while ``<runtime_dir>/crash-always`` exists."""

    def __init__(self, *, env, limits, workers=1, runtime_dir=None):
        super().__init__(env=env, limits=limits, workers=workers)
        self.marker = os.path.join(runtime_dir, "crash-always") if runtime_dir else None

    def evaluate(self, requests):
        if self.marker and os.path.exists(self.marker) and requests and requests[0].id > 0:
            os._exit(1)
        return super().evaluate(requests)


class CrashOnceMutator(Mutator):
    """The GP mutator, except that it kills its own worker once (when ``<marker_dir>/crash-once`` exists)."""

    name = "gp"
    checks_syntax = True

    def __init__(self, marker_dir: str):
        from mutators.gp import GPMutator

        self.inner = GPMutator()
        self.marker = os.path.join(marker_dir, "crash-once")

    def mutate(self, *, parents, task, seed):
        if os.path.exists(self.marker):
            os.remove(self.marker)
            os._exit(1)
        return self.inner.mutate(parents=parents, task=task, seed=seed)


class CountingSandbox(InProcessSandbox):
    """Also appends every evaluated program's id to ``<runtime_dir>/evaluated`` (what reached a sandbox)."""

    def __init__(self, *, env, limits, workers=1, runtime_dir=None):
        super().__init__(env=env, limits=limits, workers=workers)
        self.log = os.path.join(runtime_dir, "evaluated") if runtime_dir else None

    def evaluate(self, requests):
        if self.log:
            with open(self.log, "a") as fh:
                fh.write("".join(f"{r.id}\n" for r in requests))
        return super().evaluate(requests)


class EchoMutator(Mutator):
    """Writes the parent again with a comment and renamed locals: a duplicate of a program already evaluated."""

    name = "echo"

    def __init__(self, name: str | None = None, sleep_s: float = 0.0):
        if name is not None:
            self.name = name
        self.sleep_s = sleep_s

    def mutate(self, *, parents, task, seed):
        time.sleep(self.sleep_s)
        return [Proposal(source="# the same program\n" + g[0].source, parent_ids=(g[0].id,), mutator=self.name)
                for g in parents]


class SlowGPMutator(Mutator):
    """The GP mutator, ``sleep_s`` slower per batch (a stand-in for a language model)."""

    name = "slow"
    checks_syntax = True

    def __init__(self, name: str | None = None, sleep_s: float = 1.0):
        from mutators.gp import GPMutator

        self.inner = GPMutator(name=name or self.name)
        self.name = name or self.name
        self.sleep_s = sleep_s

    def mutate(self, *, parents, task, seed):
        time.sleep(self.sleep_s)
        return self.inner.mutate(parents=parents, task=task, seed=seed)


class InspirationRecorder(Mutator):
    """Asks for ``inspirations`` other elites per child and records which it got (a GP edit of the parent
    is the child), so a test can check what the engine sends."""

    name = "inspired"

    def __init__(self, *, inspirations: int = 2, name: str | None = None) -> None:
        from mutators.gp import GPMutator

        self.inspirations = inspirations
        self._gp = GPMutator()
        if name:
            self.name = name

    def mutate(self, *, parents, task, seed, inspirations=None):
        children = self._gp.mutate(parents=parents, task=task, seed=seed)
        shown = list(inspirations or [[] for _ in parents])
        return [replace(c, mutator=self.name, meta={**dict(c.meta), "inspirations": [p.id for p in s]})
                for c, s in zip(children, shown)]


class ForeignParentsMutator(Mutator):
    """Takes two parents per child but names a parent it was not given (a buggy mutator)."""

    name = "foreign"
    parents_per_child = 2

    def __init__(self, name: str | None = None):
        pass

    def mutate(self, *, parents, task, seed):
        return [Proposal(source=f"# child {seed} {i}\n" + g[0].source, parent_ids=(-1,), mutator=self.name)
                for i, g in enumerate(parents)]
