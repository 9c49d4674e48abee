"""Asynchronous steady-state MAP-Elites on Ray.

The driver keeps the archive and the run store; mutator actors write children
and evaluator actors score them in sandboxes. A *job* is one batch of
``loop.batch_size`` children: the driver picks parents and a seed, a mutator
actor writes the children, and as soon as that batch exists it goes to the
least-busy evaluator actor (the mutation's ObjectRef is forwarded, so the
programs never pass through the driver on the way). At most
``loop.max_in_flight`` jobs are in flight. When a job's results arrive, they
are inserted into the archive and written to the store in one transaction.

Reproducibility: with ``loop.ordered`` (the default when there is one mutator
and one evaluator actor) results are absorbed in submission order and new jobs
are submitted only right after an absorb, so parent choices, seeds and ids
are a function of the run seed alone.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from elm.config import QDConfig, RunConfig
from elm.archive import AddOutcome, Archive, CVTArchive, GridArchive, ParentSelector, make_selector
from elm.environment import Environment
from elm.sandbox import EnvironmentSpec
from elm.store import EvaluationRecord, RunStore
from elm.types import (SEED_MUTATOR, AddStatus, DescriptorSpace, Elite, EvalResult, EvalStatus, MutationStatus,
                       Parent, Proposal)
from elm.workers import EvaluatorWorker, MutatorWorker, syntax_error

log = logging.getLogger("elm")

MAX_STAGE_RETRIES = 3


class RunError(RuntimeError):
    """The run cannot continue (message says why and what to do)."""


# ----------------------------------------------------------------------------- archive construction


def descriptor_space_for(env_space: DescriptorSpace, qd: QDConfig) -> DescriptorSpace:
    """Apply ``qd.bins`` / ``qd.bounds`` overrides to the environment's descriptor space."""
    bins = qd.bins or env_space.bins
    bounds = qd.bounds
    if bounds is not None:
        if len(bounds) != env_space.dims or any(len(b) != 2 for b in bounds):
            raise ValueError(
                f"qd.bounds must be {env_space.dims} pairs [lower, upper] (one per descriptor "
                f"{list(env_space.names)}), got {bounds}"
            )
        lower, upper = [b[0] for b in bounds], [b[1] for b in bounds]
    else:
        lower, upper = env_space.lower, env_space.upper
    if len(bins) != env_space.dims:
        raise ValueError(
            f"qd.bins has {len(bins)} entries but the environment has {env_space.dims} descriptors "
            f"{list(env_space.names)}"
        )
    return DescriptorSpace(names=env_space.names, lower=tuple(lower), upper=tuple(upper), bins=tuple(bins))


def build_archive(space: DescriptorSpace, qd: QDConfig, *, seed: int, qd_offset: float = 0.0) -> Archive:
    """The archive ``qd`` describes; ``qd_offset`` is used when ``qd.qd_offset`` is None (the environment's)."""
    common = dict(qd_offset=qd_offset if qd.qd_offset is None else qd.qd_offset, out_of_bounds=qd.out_of_bounds)
    if qd.kind == "grid":
        return GridArchive(space=space, **common)
    if qd.kind == "cvt":
        return CVTArchive(space=space, cells=qd.cells, samples=qd.cvt_samples, seed=seed, **common)
    raise ValueError(f"qd.kind must be 'grid' or 'cvt', got {qd.kind!r}")


def build_selector(qd: QDConfig) -> ParentSelector:
    """The parent selector ``qd.selection`` names (a built-in name or a ParentSelector class path)."""
    return make_selector(qd.selection, **dict(qd.selection_args))


# ----------------------------------------------------------------------------- jobs


@dataclass
class _Job:
    index: int  # submission order
    ids: list[int]
    parents: list[list[Parent]]
    mutator: str  # "seed" for the initial population
    seed: int
    proposals_ref: Any = None  # ObjectRef of list[Proposal] (or the list itself for seeds)
    eval_ref: Any = None
    mutator_actor: int = -1
    evaluator_actor: int = -1
    stage: str = "mutate"  # "mutate" -> "evaluate" -> "done"
    retries: int = 0
    result: tuple[list[Proposal], str, list[EvalResult | None]] | None = None
    submitted_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RunSummary:
    run_dir: str
    evaluations: int
    new_evaluations: int
    status_counts: Mapping[str, int]
    num_elites: int
    coverage: float
    qd_score: float
    max_fitness: float | None
    seed_coverage: float | None
    seed_qd_score: float | None
    stop_reason: str
    elapsed_s: float
    mutator_stats: str = ""  # per-mutator table (elm.stats.format_stats), also in meta.mutator_stats

    def format(self) -> str:
        best = "n/a" if self.max_fitness is None else f"{self.max_fitness:.6g}"
        lines = [
            f"run directory   {self.run_dir}",
            f"stopped         {self.stop_reason} after {self.evaluations} evaluations "
            f"({self.new_evaluations} this session, {self.elapsed_s:.1f}s)",
            f"best fitness    {best}",
            f"elites          {self.num_elites}  coverage {self.coverage:.4f}  QD score {self.qd_score:.6g}",
        ]
        if self.seed_coverage is not None:
            lines.append(f"seeds alone     coverage {self.seed_coverage:.4f}  QD score {self.seed_qd_score:.6g}")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.status_counts.items()))
        lines.append(f"statuses        {counts}")
        if self.mutator_stats:
            lines.append("per mutator (rates are fractions of its children):")
            lines.extend("  " + line for line in self.mutator_stats.splitlines())
        return "\n".join(lines)


def _job_seed(run_seed: int, first_id: int) -> int:
    return int(np.random.SeedSequence([run_seed, first_id]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------- the driver


class Driver:
    """Runs (or resumes) one run whose store is already open.

    ``cfg`` is the checked run config; ``env`` the environment built locally
    (for its descriptor space, seeds and task).
    """

    def __init__(self, *, cfg: RunConfig, env: Environment, store: RunStore, run_dir: str,
                 progress: bool | None = None):
        self.cfg = cfg
        self.env = env
        self.store = store
        self.run_dir = run_dir
        self.seed = cfg.seed
        self.loop_cfg = cfg.loop
        self.budget = cfg.budget
        self.ray_cfg = cfg.ray
        self.space = descriptor_space_for(env.descriptor_space, cfg.qd)
        self.archive = build_archive(self.space, cfg.qd, seed=self.seed, qd_offset=env.qd_offset)
        self.selector = build_selector(cfg.qd)
        self.env_spec = EnvironmentSpec.from_config(cfg.env)
        self.batch_size = self.loop_cfg.batch_size
        self.max_in_flight = self.loop_cfg.max_in_flight
        if self.batch_size < 1 or self.max_in_flight < 1:
            raise ValueError("loop.batch_size and loop.max_in_flight must be >= 1")
        ordered = self.loop_cfg.ordered
        if ordered is None:
            ordered = self.ray_cfg.mutator_actors == 1 and self.ray_cfg.evaluator_actors == 1
        self.ordered = bool(ordered)
        self.adaptive = self.loop_cfg.adaptive
        self._busy = {"mutator": 0.0, "evaluator": 0.0}
        self._util_mark = (time.time(), 0.0, 0.0)
        self._limit = self.max_in_flight
        self.progress = self.loop_cfg.progress if progress is None else progress
        self._stop_reason: str | None = None
        self._interrupts = 0
        self._jobs: deque[_Job] = deque()
        self._next_id = store.max_id() + 1
        self._job_index = 0
        self._count = store.count()
        self._tokens = store.tokens_used()
        self._seed_stats: tuple[float, float] | None = None
        self._bar = None
        self._seeding = False

    # --------------------------------------------------------------- resume
    def _replay(self) -> None:
        """Rebuild archive, selector feedback and generations from the store (resume)."""
        batch: list[tuple[EvaluationRecord, Elite]] = []
        parent_groups: list[tuple[int, ...]] = []
        outcomes: list[AddOutcome] = []

        def flush():
            if batch:
                outs = self.archive.add([e for _, e in batch])
                self.selector.remember([o.elite for o in outs if o.elite is not None])
                for (rec, _), out in zip(batch, outs):
                    outcomes.append(out)
                    parent_groups.append(rec.parent_ids)
                batch.clear()

        for rec in self.store.iter_evaluations():
            if rec.status == EvalStatus.OK.value and rec.descriptor is not None and rec.fitness is not None:
                batch.append((rec, Elite(id=rec.id, cell=-1, source=rec.source or "", fitness=rec.fitness,
                                         descriptor=tuple(rec.descriptor), parent_ids=rec.parent_ids,
                                         mutator=rec.mutator, generation=rec.generation,
                                         created_at=rec.created_at)))
                if len(batch) >= 512:
                    flush()
            elif rec.mutator != SEED_MUTATOR:
                flush()
                parent_groups.append(rec.parent_ids)
                outcomes.append(AddOutcome(status=AddStatus.NOT_ADDED, cell=None, out_of_bounds=False, elite=None))
        flush()
        if parent_groups:
            self.selector.update(parent_groups, outcomes)

    # --------------------------------------------------------------- actors
    def _start_actors(self) -> None:
        import ray

        task = self.env.task()
        n_mut = self.ray_cfg.mutator_actors
        n_eval = self.ray_cfg.evaluator_actors
        if n_mut < 1 or n_eval < 1:
            raise ValueError("ray.mutator_actors and ray.evaluator_actors must be >= 1")
        # Restarts are unlimited: a dead actor's batch is re-issued by the driver (see _retry),
        # so Ray itself must not retry tasks (max_task_retries=0) or work would run twice.
        spread = {"scheduling_strategy": "SPREAD"} if self.ray_cfg.spread else {}
        gpus = self.ray_cfg.mutator_num_gpus
        mut_cls = ray.remote(MutatorWorker).options(
            num_cpus=self.ray_cfg.mutator_num_cpus, num_gpus=gpus,
            resources=dict(self.ray_cfg.mutator_resources),
            max_restarts=-1, max_task_retries=0, **spread,
        )
        eval_cls = ray.remote(EvaluatorWorker).options(
            num_cpus=self.ray_cfg.evaluator_num_cpus,
            resources=dict(self.ray_cfg.evaluator_resources),
            max_restarts=-1, max_task_retries=0, **spread,
        )
        self.mutators = [mut_cls.remote(dict(self.cfg.mutator), task, gpu_fraction=gpus) for _ in range(n_mut)]
        self.evaluators = [eval_cls.remote(self.cfg.sandbox, self.env_spec) for _ in range(n_eval)]
        # Fail fast (and clearly) if an actor cannot start, e.g. a bad mutator argument.
        try:
            where = ray.get([a.ping.remote() for a in self.mutators + self.evaluators])
        except Exception as exc:  # RayActorError wraps the constructor's exception
            raise RunError(f"a worker failed to start: {_root_cause(exc)}") from exc
        self.placement = {"mutator": where[:n_mut], "evaluator": where[n_mut:]}
        self.store.set_meta(placement=self.placement)
        log.info("workers: %d mutator(s) on %s, %d evaluator(s) on %s", n_mut,
                 [w["label"] for w in where[:n_mut]], n_eval, [w["label"] for w in where[n_mut:]])
        self._mut_load = [0] * n_mut
        self._eval_load = [0] * n_eval
        self._n_mut, self._n_eval = n_mut, n_eval
        slots = self.cfg.sandbox.workers
        self._capacity = {"mutator": float(n_mut), "evaluator": float(n_eval)}
        self._eval_slots = slots
        # Ordered (reproducible) runs keep a fixed limit; others adapt it between the actor
        # count and loop.max_in_flight so that evaluators always have work queued but are
        # never flooded (see _adapt).
        self._limit = self.max_in_flight if (self.ordered or not self.adaptive) else max(
            1, min(self.max_in_flight, n_mut + n_eval))
        self._limit_floor = max(1, min(self.max_in_flight, n_eval))

    def _stop_actors(self) -> None:
        import ray

        for actor in getattr(self, "mutators", []) + getattr(self, "evaluators", []):
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # a dead actor has nothing left to close
                pass
            ray.kill(actor)

    # --------------------------------------------------------------- submission
    def _remaining(self) -> int:
        in_flight = sum(len(j.ids) for j in self._jobs)
        return self.budget.evaluations - self._count - in_flight

    def _budget_exhausted(self) -> str | None:
        if self._count >= self.budget.evaluations:
            return "evaluation budget"
        wall = self.budget.wall_seconds
        if wall is not None and self.store.run_wall_s() >= wall:
            return "wall-clock budget"
        tokens = self.budget.tokens
        if tokens is not None and self._tokens >= tokens:
            return "token budget"
        return None

    def _alloc_ids(self, n: int) -> list[int]:
        ids = list(range(self._next_id, self._next_id + n))
        self._next_id += n
        return ids

    def _submit_seeds(self) -> None:
        sources = list(self.env.seed_programs())
        if not sources:
            raise RunError(f"environment {self.env.name!r} returned no seed programs")
        ids = self._alloc_ids(len(sources))
        proposals = []
        for s in sources:
            error = syntax_error(s)
            proposals.append(Proposal(source=s, parent_ids=(), mutator=SEED_MUTATOR,
                                      status=MutationStatus.OK if error is None else MutationStatus.SYNTAX_ERROR,
                                      meta={} if error is None else {"error": error}))
        job = _Job(index=self._job_index, ids=ids, parents=[[] for _ in ids], mutator=SEED_MUTATOR, seed=0,
                   proposals_ref=proposals, stage="evaluate")
        self._job_index += 1
        self._dispatch_evaluation(job)
        self._jobs.append(job)

    def _fill(self) -> None:
        while (not self._seeding and self._stop_reason is None and len(self._jobs) < self._limit and len(self.archive) > 0):
            n = min(self.batch_size, self._remaining())
            if n <= 0:
                return
            self._submit_mutation(n)

    def _submit_mutation(self, n: int) -> None:
        ids = self._alloc_ids(n)
        seed = _job_seed(self.seed, ids[0])
        rng = np.random.default_rng(seed)
        k = int(getattr(self, "_parents_per_child", 1))  # crossover mutators declare more
        chosen = self.selector.select(self.archive, n * k, rng)
        parents = [
            [Parent(id=e.id, source=e.source, fitness=e.fitness, descriptor=e.descriptor, generation=e.generation)
             for e in chosen[i * k:(i + 1) * k]]
            for i in range(n)
        ]
        job = _Job(index=self._job_index, ids=ids, parents=parents, mutator="", seed=seed)
        self._job_index += 1
        self._dispatch_mutation(job)
        self._jobs.append(job)

    def _dispatch_mutation(self, job: _Job) -> None:
        a = int(np.argmin(self._mut_load))
        self._mut_load[a] += 1
        job.mutator_actor = a
        job.stage = "mutate"
        job.proposals_ref = self.mutators[a].mutate.remote(job.parents, job.seed)

    def _dispatch_evaluation(self, job: _Job) -> None:
        a = int(np.argmin(self._eval_load))
        self._eval_load[a] += 1
        job.evaluator_actor = a
        job.stage = "evaluate"
        job.eval_ref = self.evaluators[a].evaluate.remote(job.proposals_ref, job.ids)

    # --------------------------------------------------------------- completion
    def _poll(self, timeout: float) -> None:
        """Advance jobs whose current stage finished; absorb finished jobs (in order if ordered)."""
        import ray

        refs = {}
        for job in self._jobs:
            if job.stage == "mutate":
                refs[job.proposals_ref] = job
            elif job.stage == "evaluate":
                refs[job.eval_ref] = job
        if not refs:
            return
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout, fetch_local=False)
        if ready:  # collect everything else that is already done, without waiting
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in ready:
            job = refs[ref]
            if job.stage == "mutate":
                self._mut_load[job.mutator_actor] -= 1
                if self._check_stage(job, ref):
                    self._dispatch_evaluation(job)  # forward the ObjectRef: no driver hop for programs
            else:
                self._eval_load[job.evaluator_actor] -= 1
                try:
                    label, busy, results = ray.get(ref)
                    self._busy["evaluator"] += busy
                    self._adapt()
                    if isinstance(job.proposals_ref, list):
                        proposals = job.proposals_ref
                    else:
                        proposals = ray.get(job.proposals_ref)
                        self._busy["mutator"] += sum(p.model_seconds for p in proposals)
                    job.result = (proposals, label, results)
                    job.stage = "done"
                except ray.exceptions.RayActorError as exc:
                    self._retry(job, "evaluate", exc)
                except ray.exceptions.RayTaskError as exc:
                    self._fail_job(job, f"evaluator raised: {_root_cause(exc)}")
        self._absorb_ready()

    def _adapt(self) -> None:
        """Backpressure: grow the in-flight limit while an evaluator waits, shrink it when they are flooded."""
        if self.ordered or not self.adaptive or self._stop_reason is not None:
            return
        queued = sum(self._eval_load)  # batches sent to evaluators and not yet returned
        if queued < self._n_eval and sum(self._mut_load) >= self._n_mut:
            self._limit = min(self.max_in_flight, self._limit + 1)
        elif queued > 2 * self._n_eval:
            self._limit = max(self._limit_floor, self._limit - 1)

    def _utilisation(self) -> tuple[float | None, float | None]:
        """Share of time each role was busy since the previous call (None before any work)."""
        now = time.time()
        t0, m0, e0 = self._util_mark
        dt = now - t0
        if dt <= 0:
            return None, None
        m, e = self._busy["mutator"], self._busy["evaluator"]
        self._util_mark = (now, m, e)
        return (min(1.0, (m - m0) / (dt * self._capacity["mutator"])),
                min(1.0, (e - e0) / (dt * self._capacity["evaluator"])))

    def _check_stage(self, job: _Job, ref) -> bool:
        """True if a finished mutation is usable; otherwise retries or fails the job."""
        import ray

        try:
            ray.get(ref, timeout=0)  # surfaces a mutator exception or actor death
            return True
        except ray.exceptions.RayActorError as exc:
            self._retry(job, "mutate", exc)
        except ray.exceptions.RayTaskError as exc:
            self._fail_job(job, f"mutator raised: {_root_cause(exc)}")
        return False

    def _retry(self, job: _Job, stage: str, exc: Exception) -> None:
        job.retries += 1
        if job.retries > MAX_STAGE_RETRIES:
            self._fail_job(job, f"{stage} worker died {job.retries} times: {_root_cause(exc)}", lost=True)
            return
        log.warning("%s worker died (%s); re-issuing batch of %d", stage, _root_cause(exc), len(job.ids))
        if stage == "mutate":
            self._dispatch_mutation(job)
        else:
            self._dispatch_evaluation(job)

    def _fail_job(self, job: _Job, reason: str, *, lost: bool = False) -> None:
        """Record every child of a job that cannot complete, with the reason (never dropped).

        A failed mutation has no programs: each child gets mutation status ``MUTATOR_ERROR``.
        A failed evaluation keeps the programs it had. Either way the evaluation status is
        ``LOST`` when the worker kept dying (``lost``), else ``ERROR`` for an evaluator that
        raised; a mutator that raised leaves just the mutation status.
        """
        import ray

        log.warning("batch of %d children failed: %s", len(job.ids), reason)
        proposals: list[Proposal] | None = None
        if job.stage == "evaluate":
            if isinstance(job.proposals_ref, list):
                proposals = job.proposals_ref
            else:
                try:
                    proposals = ray.get(job.proposals_ref, timeout=30)
                except Exception:  # the mutation's result is gone with its worker: no programs to keep
                    proposals = None
        if proposals is None:
            proposals = [Proposal(source=None, parent_ids=tuple(p.id for p in g), mutator=job.mutator or "unknown",
                                  status=MutationStatus.MUTATOR_ERROR, meta={"error": reason}) for g in job.parents]
        if job.stage == "evaluate" or lost:
            status = EvalStatus.LOST if lost else EvalStatus.ERROR
            results: list[EvalResult | None] = [EvalResult(id=i, status=status, error=reason) for i in job.ids]
        else:
            results = [None] * len(job.ids)
        job.result = (proposals, "", results)
        job.stage = "done"

    def _absorb_ready(self) -> None:
        if self.ordered:
            while self._jobs and self._jobs[0].stage == "done":
                self._absorb(self._jobs.popleft())
                self._fill()
        else:
            done = [j for j in self._jobs if j.stage == "done"]
            for job in done:
                self._jobs.remove(job)
                self._absorb(job)
            if done:
                self._fill()

    def _absorb(self, job: _Job) -> None:
        proposals, worker, results = job.result
        now = time.time()
        n = len(job.ids)
        parent_ids: list[tuple[int, ...]] = []
        generations: list[int] = []
        candidates: list[int] = []
        elites: list[Elite] = []
        for i, (eval_id, proposal, result) in enumerate(zip(job.ids, proposals, results)):
            group = job.parents[i]
            parent_ids.append(tuple(p.id for p in group) or tuple(proposal.parent_ids))
            generations.append(1 + max(p.generation for p in group) if group else 0)
            if result is not None and result.status is EvalStatus.OK:
                candidates.append(i)
                elites.append(Elite(id=eval_id, cell=-1, source=proposal.source or "", fitness=float(result.fitness),
                                    descriptor=tuple(result.descriptor), parent_ids=parent_ids[i],
                                    mutator=proposal.mutator, generation=generations[i], created_at=now))
        outcomes: list[AddOutcome | None] = [None] * n
        if elites:
            for i, out in zip(candidates, self.archive.add(elites)):
                outcomes[i] = out
        records: list[EvaluationRecord] = []
        for i, (eval_id, proposal, result) in enumerate(zip(job.ids, proposals, results)):
            common = dict(
                id=eval_id, parent_ids=parent_ids[i], mutator=proposal.mutator, generation=generations[i],
                source=proposal.source, mutation_status=None if proposal.mutator == SEED_MUTATOR else proposal.status.value,
                tokens_in=proposal.tokens_in, tokens_out=proposal.tokens_out, model_s=proposal.model_seconds,
                worker=worker or None, created_at=now,
            )
            if result is None:  # the mutator produced no program; its status says why
                records.append(EvaluationRecord(status=proposal.status.value, error=dict(proposal.meta).get("error"),
                                                info={"mutation": dict(proposal.meta)} if proposal.meta else {},
                                                **common))
                continue
            info = dict(result.info)
            if proposal.meta:
                info["mutation"] = dict(proposal.meta)
            status, error, cell, archive_status = result.status.value, result.error, None, None
            out = outcomes[i]
            if out is not None:
                if out.status is None:  # rejected: outside bounds under the "reject" policy
                    status = EvalStatus.OUT_OF_BOUNDS.value
                    error = (f"descriptor {list(result.descriptor)} outside bounds "
                             f"{list(zip(self.space.lower, self.space.upper))}")
                else:
                    cell, archive_status = out.cell, out.status.value
            records.append(EvaluationRecord(
                status=status, fitness=result.fitness, descriptor=result.descriptor, cell=cell,
                archive_status=archive_status, error=error, info=info, run_s=result.run_s,
                score_s=result.score_s, eval_s=result.total_s, **common,
            ))
        groups = parent_ids
        if job.mutator != SEED_MUTATOR:
            self.selector.update(groups, [o or AddOutcome(status=AddStatus.NOT_ADDED, cell=None,
                                                          out_of_bounds=False, elite=None) for o in outcomes])
        self._count += len(records)
        self._tokens += sum(r.tokens_in + r.tokens_out for r in records)
        stats = self.archive.stats()
        mutator_util, evaluator_util = self._utilisation()
        metrics = dict(evaluations=self._count, wall_s=self.store.run_wall_s(), num_elites=stats.num_elites,
                       coverage=stats.coverage, qd_score=stats.qd_score, norm_qd_score=stats.norm_qd_score,
                       max_fitness=stats.max_fitness, mean_fitness=stats.mean_fitness, tokens=self._tokens,
                       in_flight=self._limit, mutator_util=mutator_util, evaluator_util=evaluator_util)
        self.store.record(records, metrics=metrics)
        if self._bar is not None:
            self._bar.update(len(records))
            best = "-" if stats.max_fitness is None else f"{stats.max_fitness:.5g}"
            self._bar.set_postfix_str(f"best={best} cov={stats.coverage:.3f} qd={stats.qd_score:.4g}", refresh=False)
        if self._stop_reason is None:
            reason = self._budget_exhausted()
            if reason:
                self._stop_reason = reason

    # --------------------------------------------------------------- main
    def _on_sigint(self, signum, frame) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self._stop_reason = "interrupted"
            sys.stderr.write("\nCtrl-C: finishing in-flight evaluations and flushing the store "
                             "(press Ctrl-C again to abandon them)\n")
        else:
            self._stop_reason = "interrupted (in-flight work abandoned)"

    def run(self) -> RunSummary:
        start = time.time()
        start_count = self._count
        self.store.begin_session()
        resumed = self._count > 0
        if resumed:
            self._replay()
            log.info("resumed: %d evaluations in the store, %d elites rebuilt", self._count, len(self.archive))
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        end_reason = "error"
        try:
            self._start_actors()
            self._parents_per_child = int(self._mutator_parents_per_child())
            if self.progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.budget.evaluations, initial=self._count, unit="eval",
                                 dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
            if self.store.count(mutator=SEED_MUTATOR) == 0:  # new run, or killed before its seeds finished
                self._seeding = True
                self._submit_seeds()
                self._drain()
                self._seeding = False
            if len(self.archive) == 0:
                raise RunError(self._no_seed_message())
            if self._seed_stats is None:
                self._seed_stats = self._seed_archive_stats()
            self._stop_reason = self._stop_reason or self._budget_exhausted()
            self._fill()
            while self._jobs:
                if self._stop_reason and self._stop_reason.endswith("abandoned)"):
                    break
                self._poll(timeout=0.5)
                if self._stop_reason is None:
                    self._stop_reason = self._budget_exhausted()
                    self._fill()
            self._stop_reason = self._stop_reason or self._budget_exhausted() or "evaluation budget"
            end_reason = self._stop_reason
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self._bar is not None:
                self._bar.close()
            self._stop_actors()
            try:
                self.store.end_session(end_reason)
            except Exception as exc:  # e.g. the disk is full: keep the original error visible
                log.error("could not record the end of the session: %s", exc)
        if self.loop_cfg.export_elites:
            self.store.export_elites(f"{self.run_dir}/elites.jsonl", self.archive.elites())
        per_mutator = self._record_mutator_stats()
        stats = self.archive.stats()
        seed_cov, seed_qd = self._seed_stats if self._seed_stats else (None, None)
        return RunSummary(mutator_stats=per_mutator,
            run_dir=self.run_dir, evaluations=self._count, new_evaluations=self._count - start_count,
            status_counts=self.store.status_counts(), num_elites=stats.num_elites, coverage=stats.coverage,
            qd_score=stats.qd_score, max_fitness=stats.max_fitness, seed_coverage=seed_cov,
            seed_qd_score=seed_qd, stop_reason=self._stop_reason, elapsed_s=time.time() - start,
        )

    def _record_mutator_stats(self) -> str:
        """Per-mutator statistics of the whole run into ``meta.mutator_stats``; returns them as a table.

        Once per session, after the loop: one GROUP BY over the store, off the hot path.
        """
        from elm.stats import format_stats, mutator_stats

        try:
            stats = mutator_stats(self.store)
            self.store.set_meta(mutator_stats=[s.to_dict() for s in stats])
        except Exception as exc:  # statistics must never turn a finished run into a failed one
            log.warning("could not record per-mutator statistics: %s", exc)
            return ""
        return format_stats(stats)

    def _mutator_parents_per_child(self) -> int:
        import ray

        # asked of the built instance: a mixture's or a configured crossover's differs from its class's
        return int(ray.get(self.mutators[0].parents_per_child.remote()))

    def _drain(self) -> None:
        while self._jobs:
            self._poll(timeout=0.5)
            if self._stop_reason and self._stop_reason.endswith("abandoned)"):
                return

    def _seed_archive_stats(self) -> tuple[float, float]:
        """Coverage and QD score of the seed programs alone (for the summary's comparison)."""
        archive = build_archive(self.space, self.cfg.qd, seed=self.seed, qd_offset=self.env.qd_offset)
        archive.add([Elite(id=r.id, cell=-1, source="", fitness=r.fitness, descriptor=tuple(r.descriptor))
                     for r in self.store.iter_evaluations(status=EvalStatus.OK.value, mutator=SEED_MUTATOR)])
        s = archive.stats()
        return s.coverage, s.qd_score

    def _no_seed_message(self) -> str:
        detail = "; ".join(f"seed {r.id}: {r.status} {((r.error or '').strip().splitlines() or [''])[-1][-300:]}"
                           for r in self.store.iter_evaluations(mutator=SEED_MUTATOR))
        return (f"no seed program of environment {self.env.name!r} evaluated ok, so evolution cannot start. "
                f"Check the environment's seed programs locally with env.evaluate_local(source). {detail}")


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc.__cause__
    text = str(cause or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
