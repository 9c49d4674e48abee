"""Ray actors of a run: mutator workers (host a Mutator) and evaluator workers (host a Sandbox).

Both are plain classes wrapped with ``ray.remote`` by the driver, so they can
also be unit-tested in-process. They receive only resolved, plain-container
configs (never a Hydra ``DictConfig``).
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from elm.config import SandboxConfig
from elm.dedup import program_key
from elm.mutator import build_mutator, merge_variant
from elm.plugins import resolve_class
from elm.sandbox import EnvironmentSpec, Sandbox
from elm.types import EvalRequest, EvalResult, MutationStatus, Parent, Proposal, TaskContext


def syntax_error(source: str) -> str | None:
    """None if ``source`` parses, else a one-line description of the syntax error (or of a non-str source)."""
    if not isinstance(source, str):
        return f"TypeError: a program must be Python source (str), got {type(source).__name__}"
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno}, column {exc.offset})"
    except ValueError as exc:  # e.g. source with NUL bytes
        return f"{type(exc).__name__}: {exc}"
    return None


def pack(value: Any) -> bytes:
    """One batch as bytes for a trip between the driver and a worker (never persisted).

    Ray serialises a list of dataclasses object by object, through a Python callback each (0.52 ms
    for 64 parents on the driver, against 0.08 ms for one stdlib pickle of the whole batch); bytes
    cross Ray as they are. Ray pickles what crosses it anyway: this changes how, not whether, and only
    between the run's own processes (programs run in sandboxes, never in a worker).
    """
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(payload: bytes | Any) -> Any:
    """The value :func:`pack` packed (a value that is not bytes is returned as it is)."""
    return pickle.loads(payload) if isinstance(payload, (bytes, bytearray, memoryview)) else payload


def sandbox_class(cfg: SandboxConfig) -> type[Sandbox]:
    """The Sandbox subclass named by ``cfg._target_`` (ValueError naming it otherwise)."""
    return resolve_class(cfg._target_, Sandbox, what="sandbox")


def build_sandbox(cfg: SandboxConfig, env: EnvironmentSpec) -> Sandbox:
    """Build the sandbox backend named by ``cfg._target_`` with the configured limits and warm slots."""
    return sandbox_class(cfg)(env=env, limits=cfg.limits, workers=cfg.workers, runtime_dir=cfg.runtime_dir)


class MutatorWorker:
    """Hosts one operator lane: a Mutator, or one per variant of it (sharing its model).

    ``mutate`` is called with parent groups, a seed and the variant per batch, and returns the
    children and (with ``keys``) their canonical keys for duplicate detection
    (:func:`elm.dedup.program_key`), computed here so programs need not travel to the driver.
    """

    def __init__(self, mutator_cfg: Mapping[str, Any], task: TaskContext, *, gpu_fraction: float = 0.0,
                 variants: Mapping[str, Mapping[str, Any]] | None = None, keys: bool = False,
                 adapter_state: str | None = None):
        """``mutator_cfg``: a checked mutator node (the run's, or one lane's); ``variants``: named
        overrides of it, each built as its own instance (language-model backends are shared).
        ``adapter_state``: a JSON file naming the adapter this lane's model runs with
        (``{"path": ..., "version": ...}``, written by in-run fine-tuning, :mod:`elm.intrain`); loaded
        here when it exists, so a restarted actor and a resumed run keep the last good adapter."""
        if 0.0 < gpu_fraction < 1.0:
            _cap_gpu_memory(gpu_fraction)
        self.mutator = build_mutator(mutator_cfg)
        self.variants = {name: build_mutator(merge_variant(mutator_cfg, overrides), what=f"variant {name!r}")
                         for name, overrides in (variants or {}).items()}
        self.keys = keys
        self.task = task
        self.label = f"{socket.gethostname()}:{os.getpid()}"
        if adapter_state and os.path.exists(adapter_state):
            with open(adapter_state, encoding="utf-8") as fh:
                self.load_adapter(str(json.load(fh)["path"]))

    def model_version(self) -> str | None:
        """The version of the weights writing this lane's children (None: the lane has no model)."""
        return self.mutator.model_version()

    def load_adapter(self, path: str) -> str:
        """Load fine-tuned weights between batches (an actor runs one call at a time); their version."""
        version = self.mutator.load_adapter(path)
        for mutator in self.variants.values():  # variants share the backend: loading again is a no-op
            mutator.load_adapter(path)
        return version

    def ping(self) -> dict[str, str]:
        """Where this worker runs: ``label`` (host:pid) and Ray ``node_id`` (None outside Ray)."""
        return {"label": self.label, "node_id": _node_id()}

    def parents_per_child(self) -> int:
        """Parents per child of the hosted mutator *instances* (a mixture, or a crossover configured
        with more parents, differs from its class's default)."""
        return max(int(getattr(m, "parents_per_child", 1)) for m in [self.mutator, *self.variants.values()])

    def inspirations_per_child(self) -> int:
        """Other elites to send per child (the most any hosted instance shows; 0: none)."""
        return max(int(getattr(m, "inspirations", 0)) for m in [self.mutator, *self.variants.values()])

    def mutate(self, parents: Sequence[Sequence[Parent]], seed: int, variant: str | None = None,
               inspirations: Sequence[Sequence[Parent]] | None = None) -> tuple[list[Proposal], list[str | None]]:
        """One child per parent group, and each child's canonical key (None without ``keys``).
        ``inspirations``: per child, other elites for mutators that show them (ignored by others)."""
        if variant is not None and variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; this lane has {sorted(self.variants)}")
        mutator = self.mutator if variant is None else self.variants[variant]
        k = int(getattr(mutator, "parents_per_child", 1))
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        shown = int(getattr(mutator, "inspirations", 0))
        if shown > 0:
            given = list(inspirations or [])
            extra["inspirations"] = [list(given[i])[:shown] if i < len(given) else [] for i in range(len(parents))]
        proposals = list(mutator.mutate(parents=[list(g)[:k] for g in parents], task=self.task, seed=seed, **extra))
        elapsed = time.perf_counter() - start
        if len(proposals) != len(parents):
            raise RuntimeError(
                f"mutator {type(mutator).__name__} returned {len(proposals)} children "
                f"for {len(parents)} parent groups; it must return exactly one per group"
            )
        share = elapsed / max(len(proposals), 1)
        check = not getattr(mutator, "checks_syntax", False)
        out = []
        for p in proposals:
            if not p.model_seconds:  # mutators that do not time themselves get an equal share
                p = _replace(p, model_seconds=share)
            if check and p.usable:
                error = syntax_error(p.source)
                if error is not None:
                    p = _replace(p, status=MutationStatus.SYNTAX_ERROR, meta={**dict(p.meta), "error": error})
            if variant is not None:
                p = _replace(p, meta={**dict(p.meta), "variant": variant})
            out.append(p)
        keys = [program_key(p.source) if self.keys and p.usable else None for p in out]
        return out, keys

    def mutate_packed(self, payload: bytes, seed: int, variant: str | None = None) -> tuple[bytes, list[str | None]]:
        """:meth:`mutate` over the wire: ``payload`` is :func:`pack` of ``(parents, inspirations)``; returns
        the children packed (the driver forwards them to an evaluator unopened) and their keys."""
        parents, inspirations = unpack(payload)
        proposals, keys = self.mutate(parents, seed, variant, inspirations)
        return pack(proposals), keys

    def close(self) -> None:
        for mutator in [self.mutator, *self.variants.values()]:
            mutator.close()


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 (outside a Ray worker)
        return None


def _cap_gpu_memory(fraction: float) -> None:
    """Ray's fractional GPUs are logical only: cap this process's CUDA memory to its share."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(fraction)


def _replace(proposal: Proposal, **changes: Any) -> Proposal:
    from dataclasses import replace

    return replace(proposal, **changes)


class EvaluatorWorker:
    """Hosts one Sandbox (a pool of warm sandboxes) and evaluates batches of children."""

    def __init__(self, sandbox_cfg: SandboxConfig, env: EnvironmentSpec, *, run_seed: int = 0):
        self.sandbox = build_sandbox(sandbox_cfg, env)
        #: every candidate's randomness is seeded from it and its source (elm.types.candidate_seed)
        self.run_seed = int(run_seed)
        self.label = f"{socket.gethostname()}:{os.getpid()}"

    def ping(self) -> dict[str, str]:
        """Where this worker runs: ``label`` (host:pid) and Ray ``node_id`` (None outside Ray)."""
        return {"label": self.label, "node_id": _node_id()}

    def evaluate(self, proposals: Sequence[Proposal], ids: Sequence[int],
                 skip: Sequence[int] = ()) -> tuple[str, float, list[EvalResult | None]]:
        """Evaluate children; returns (worker label, busy seconds, one result or None per child).

        None means the child is not evaluated: the mutator produced no program,
        or it failed the syntax check in :class:`MutatorWorker` (its status says
        which), or its position is in ``skip`` (a duplicate). Only children with
        status ``ok`` reach a sandbox.
        """
        skipped = set(skip)
        start = time.perf_counter()
        results: list[EvalResult | None] = [None] * len(ids)  # ids may be fewer: the rest was dropped
        requests: list[EvalRequest] = []
        slots: list[int] = []
        for i, (proposal, eval_id) in enumerate(zip(proposals, ids)):
            if not proposal.usable or i in skipped:
                continue
            requests.append(EvalRequest(id=eval_id, source=proposal.source, seed=self.run_seed))
            slots.append(i)
        if requests:
            for i, result in zip(slots, self.sandbox.evaluate(requests)):
                results[i] = result
        return self.label, time.perf_counter() - start, results

    def evaluate_packed(self, proposals: bytes | Sequence[Proposal], ids: Sequence[int],
                        skip: Sequence[int] = ()) -> bytes:
        """:meth:`evaluate` over the wire: ``proposals`` packed by :meth:`MutatorWorker.mutate_packed`
        (or a list); returns :func:`pack` of its result tuple."""
        return pack(self.evaluate(unpack(proposals), ids, skip))

    def close(self) -> None:
        self.sandbox.close()
