"""Asynchronous steady-state MAP-Elites on Ray, in lanes.

The driver keeps the archive and the run store; mutator actors write children and evaluator actors
score them in sandboxes. A *job* is one batch of ``loop.batch_size`` children written by one
*operator* (a mutator lane, or one of its variants): the driver picks the operator
(:mod:`elm.operators`), the island (:mod:`elm.islands`), parents and a seed; the lane's actor
writes the children together with their canonical keys (:mod:`elm.dedup`); the driver turns the
keys into a skip list of duplicates, and the batch's ObjectRef goes to the least-busy evaluator
actor (the programs never pass through the driver). When a job's results arrive they are offered
to the archive(s) and written to the store in one transaction.

*Lanes*: each component of a mixture runs in its own mutator actor(s), so a slow language model
does not hold back the baseline; batches are absorbed as they finish and the share of children
per operator follows the configured (or adapted) weights over time.

Reproducibility: with ``loop.ordered`` (the default for one lane, one mutator and one evaluator
actor) results are absorbed in submission order and new jobs are submitted only right after an
absorb, so parent choices, seeds and ids are a function of the run seed alone.
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
from typing import Any

import numpy as np

from elm.archive import AddOutcome
from elm.config import RunConfig
from elm.dedup import KEY_VERSION, RETRY_STATUSES, DuplicateIndex, program_key
from elm.environment import Environment
from elm.inspirations import choose_inspirations
from elm.intrain import InRunTraining
from elm.intrain import state_file as adapter_state_file
from elm.islands import IslandModel
from elm.mutator import Lane, Mutator
from elm.operators import Operator, OperatorChooser
from elm.plugins import resolve_class
from elm.qd import build_archive, build_selector, descriptor_space_for
from elm.sandbox import EnvironmentSpec
from elm.store import EvaluationRecord, RunStore
from elm.summary import RunSummary
from elm.types import SEED_MUTATOR, AddStatus, Elite, EvalResult, EvalStatus, MutationStatus, Parent, Proposal
from elm.workers import EvaluatorWorker, MutatorWorker, pack, syntax_error, unpack

log = logging.getLogger("elm")

MAX_STAGE_RETRIES = 3
#: how long a batch waits for a restarting actor before that counts as the actor dying (seconds)
UNAVAILABLE_PATIENCE_S = 120.0
#: a run whose children keep being duplicates stops after this many per evaluation of its budget
DUPLICATE_LIMIT = 10

__all__ = ["Driver", "RunError", "RunSummary"]


class RunError(RuntimeError):
    """The run cannot continue (message says why and what to do)."""


_NOT_OFFERED = AddOutcome(status=AddStatus.NOT_ADDED, cell=None, out_of_bounds=False, elite=None)
# Status strings of the per-child hot path (_absorb): an enum's ``.value`` goes through a descriptor that
# costs about a microsecond a call, ``_value_`` is the member's plain attribute
_DUPLICATE = EvalStatus.DUPLICATE._value_
_OUT_OF_BOUNDS = EvalStatus.OUT_OF_BOUNDS._value_


@dataclass
class _Job:
    index: int  # submission order
    ids: list[int]  # -1 until assigned (multi-lane runs number children when their mutation is done)
    parents: list[list[Parent]]
    operator: str  # "lane" or "lane/variant"; SEED_MUTATOR for the initial population
    lane: int  # index into Driver.lanes (-1 for seeds)
    variant: str | None
    island: int | None
    seed: int
    inspirations: list[list[Parent]] | None = None  # per child, other elites shown to the operator
    proposals_ref: Any = None  # ObjectRef of the packed list[Proposal] (or the list itself for seeds)
    payload: bytes | None = None  # the packed parents and inspirations (kept for a re-issue)
    keys_ref: Any = None  # ObjectRef of list[str | None]: the children's canonical keys
    keys: list[str | None] | None = None
    duplicate_of: list[int | None] = field(default_factory=list)
    eval_ref: Any = None
    mutator_actor: int = -1
    evaluator_actor: int = -1
    stage: str = "mutate"  # "mutate" -> "evaluate" -> "done"; "wait": for a restarting actor
    retries: int = 0
    retry_stage: str = ""  # the stage to re-issue ("mutate" or "evaluate")
    retry_at: float = 0.0  # when a waiting job is re-issued
    waits: int = 0
    unavailable_since: float | None = None  # first time its actor was found restarting
    result: tuple[list[Proposal], str, list[EvalResult | None]] | None = None
    submitted_at: float = field(default_factory=time.time)


@dataclass
class _LaneState:
    lane: Lane
    actors: list[Any] = field(default_factory=list)
    load: list[int] = field(default_factory=list)  # jobs in the mutate stage per actor
    in_flight: int = 0  # jobs of this lane not yet absorbed
    parents_per_child: int = 1
    inspirations: int = 0  # other elites shown per child (language-model operators that ask for them)


def _mutating(job: _Job) -> bool:
    """Whether the job's children are still being written (or wait to be, for a restarting actor)."""
    return job.stage == "mutate" or (job.stage == "wait" and job.retry_stage == "mutate")


def _parent(e: Elite) -> Parent:
    return Parent(id=e.id, source=e.source, fitness=e.fitness, descriptor=e.descriptor, generation=e.generation)


def _job_seed(run_seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([run_seed, *keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


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
        self.search = cfg.search
        self.space = descriptor_space_for(env.descriptor_space, cfg.qd)
        self.archive = build_archive(self.space, cfg.qd, seed=self.seed, qd_offset=env.qd_offset)
        self.selector = build_selector(cfg.qd)
        self.islands: IslandModel | None = None
        if self.search.islands.count > 1:
            self.islands = IslandModel(
                self.search.islands, seed=self.seed, make_selector=lambda: build_selector(cfg.qd),
                make_archive=lambda: build_archive(self.space, cfg.qd, seed=self.seed, qd_offset=env.qd_offset))
        self.env_spec = EnvironmentSpec.from_config(cfg.env)
        self.batch_size = self.loop_cfg.batch_size
        self.max_in_flight = self.loop_cfg.max_in_flight
        mutator_cls = resolve_class(str(cfg.mutator["_target_"]), Mutator, what="mutator")
        lanes = mutator_cls.lanes(cfg.mutator) if self.search.lanes else []
        if not lanes or len(lanes) == 1 and not lanes[0].variants:
            # one lane hosting the whole mutator (a mixture mixes inside its actor)
            lanes = [Lane(name=str(cfg.mutator.get("name") or mutator_cls.name), weight=1.0, node=cfg.mutator)]
        self.lanes = [_LaneState(lane=lane) for lane in lanes]
        self.training: InRunTraining | None = None
        if cfg.finetune.enabled:
            try:
                self.training = InRunTraining(cfg=cfg.finetune, store=store, run_dir=run_dir, lanes=lanes,
                                              task=env.task())
            except ValueError as exc:
                raise RunError(str(exc)) from None
        operators = [Operator(name=arm, lane=lane.name, variant=arm.split("/", 1)[1] if "/" in arm else None,
                              prior=lane.weight / len(lane.arms()))
                     for lane in lanes for arm in lane.arms()]
        self.operators = OperatorChooser(operators, self.search.bandit)
        self._op_lane = {o.name: i for i, lane in enumerate(lanes) for o in operators if o.lane == lane.name}
        ordered = self.loop_cfg.ordered
        if ordered is None:
            ordered = len(self.lanes) == 1 and self.ray_cfg.mutator_actors == 1 and self.ray_cfg.evaluator_actors == 1
        self.ordered = bool(ordered)
        self.adaptive = self.loop_cfg.adaptive
        self.dedup = DuplicateIndex() if self.search.dedup else None
        self._busy = {"mutator": 0.0, "evaluator": 0.0}
        self._util_mark = (time.time(), 0.0, 0.0)
        self._limit = self.max_in_flight
        self.progress = self.loop_cfg.progress if progress is None else progress
        self._stop_reason: str | None = None
        self._interrupts = 0
        self._jobs: deque[_Job] = deque()
        self._next_id = store.max_id() + 1
        self._job_index = 0
        self._count = store.count_budgeted()
        self._duplicates = store.count(status=EvalStatus.DUPLICATE.value)
        self._tokens = store.tokens_used()
        self._seed_stats: tuple[float, float] | None = None
        self._bar = None
        self._seeding = False

    # --------------------------------------------------------------- resume
    def _replay(self) -> None:
        """Rebuild the archive(s), selector feedback, duplicate index and operator rates from the store."""
        batch: list[tuple[EvaluationRecord, Elite]] = []
        parent_groups: list[tuple[int, ...]] = []
        outcomes: list[AddOutcome] = []
        elites_by_id: dict[int, Elite] = {}
        events = self.store.island_events() if self.islands is not None else []
        # Stored keys made under another Python version do not match this one's (elm.dedup); a store
        # from before the version was recorded is taken to be this version's.
        key_version = self.store.meta().get("dedup_key_version", KEY_VERSION) if self.dedup is not None \
            else KEY_VERSION  # without duplicate detection the keys wait for a session that uses them
        rekeyed: list[tuple[int, str | None]] = []
        issued = [0] * (self.islands.count if self.islands is not None else 0)
        budgeted = 0

        def flush():
            if not batch:
                return
            outs = self.archive.add([e for _, e in batch])
            self.selector.remember([o.elite for o in outs if o.elite is not None])
            by_island: dict[int, list[int]] = {}
            for k, (rec, _) in enumerate(batch):
                if self.islands is not None and rec.island is not None and 0 <= rec.island < self.islands.count:
                    by_island.setdefault(rec.island, []).append(k)
            for island, ks in by_island.items():
                for k, out in zip(ks, self.islands.add(island, [batch[k][1] for k in ks])):
                    outs[k] = out
            for (rec, _), out in zip(batch, outs):
                if rec.mutator != SEED_MUTATOR:
                    outcomes.append(out)
                    parent_groups.append(rec.parent_ids)
                    self._feedback_one(rec, out.improvement)
            batch.clear()

        for rec in self.store.iter_evaluations():
            if rec.status != EvalStatus.DUPLICATE.value:
                budgeted += 1
            while events and events[0]["evaluations"] < budgeted:
                flush()
                self.islands.replay_event(events.pop(0), elites_by_id)
            key = rec.program_key
            if key is not None and key_version != KEY_VERSION:
                key = program_key(rec.source)
                rekeyed.append((rec.id, key))
            if self.dedup is not None and rec.status != EvalStatus.DUPLICATE.value and rec.source is not None \
                    and rec.status not in RETRY_STATUSES:
                self.dedup.claim(key or program_key(rec.source), rec.id)
            if self.islands is not None and rec.island is not None and 0 <= rec.island < len(issued):
                issued[rec.island] += 1
            if rec.status == EvalStatus.OK.value and rec.descriptor is not None and rec.fitness is not None:
                elite = Elite(id=rec.id, cell=-1, source=rec.source or "", fitness=rec.fitness,
                              descriptor=tuple(rec.descriptor), parent_ids=rec.parent_ids, mutator=rec.mutator,
                              generation=rec.generation, created_at=rec.created_at)
                elites_by_id[rec.id] = elite
                batch.append((rec, elite))
                if rec.mutator == SEED_MUTATOR and self.islands is not None:
                    batch.pop()
                    self.archive.add([elite])
                    self.islands.seed_all([elite])
                elif len(batch) >= 512:
                    flush()
            elif rec.mutator != SEED_MUTATOR:
                flush()
                parent_groups.append(rec.parent_ids)
                outcomes.append(_NOT_OFFERED)
                self._feedback_one(rec, 0.0)
        flush()
        if rekeyed:
            self.store.set_program_keys(rekeyed)
            log.info("duplicate detection: recomputed the keys of %d evaluations (stored under %s, now %s)",
                     len(rekeyed), key_version, KEY_VERSION)
        for event in events:
            self.islands.replay_event(event, elites_by_id)
        if self.islands is not None:
            self.islands.restore_schedule(budgeted, issued)
        if parent_groups:
            self.selector.update(parent_groups, outcomes)

    def _feedback_one(self, rec: EvaluationRecord, improvement: float) -> None:
        name = f"{rec.mutator}/{rec.variant}" if rec.variant else rec.mutator
        if name in self._op_lane:
            self.operators.feedback(name, [improvement], [rec.model_s + rec.eval_s])

    # --------------------------------------------------------------- actors
    def _start_actors(self) -> None:
        import ray

        task = self.env.task()
        n_mut = self.ray_cfg.mutator_actors
        n_eval = self.ray_cfg.evaluator_actors
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
        for state in self.lanes:
            # the lane's last good fine-tuned adapter, if it has one (also when fine-tuning is now off)
            adapter_state = str(adapter_state_file(self.run_dir, state.lane.name))
            state.actors = [mut_cls.remote(dict(state.lane.node), task, gpu_fraction=gpus,
                                           variants=dict(state.lane.variants), keys=self.dedup is not None,
                                           adapter_state=adapter_state)
                            for _ in range(n_mut)]
            state.load = [0] * n_mut
        self.evaluators = [eval_cls.remote(self.cfg.sandbox, self.env_spec, run_seed=self.seed)
                           for _ in range(n_eval)]
        mutators = [a for s in self.lanes for a in s.actors]
        # Fail fast (and clearly) if an actor cannot start, e.g. a bad mutator argument.
        try:
            where = ray.get([a.ping.remote() for a in mutators + self.evaluators])
            per_child = ray.get([s.actors[0].parents_per_child.remote() for s in self.lanes])
            shown = ray.get([s.actors[0].inspirations_per_child.remote() for s in self.lanes])
        except Exception as exc:  # RayActorError wraps the constructor's exception
            raise RunError(f"a worker failed to start: {_root_cause(exc)}") from exc
        for state, k, m in zip(self.lanes, per_child, shown):
            state.parents_per_child, state.inspirations = int(k), int(m)
        if self.training is not None:
            versions = ray.get([s.actors[0].model_version.remote() for s in self.lanes])
            try:
                self.training.start(versions={s.lane.name: v for s, v in zip(self.lanes, versions)},
                                    actors={s.lane.name: s.actors for s in self.lanes})
            except ValueError as exc:
                raise RunError(str(exc)) from None
        self.placement = {"mutator": where[:len(mutators)], "evaluator": where[len(mutators):]}
        self.store.set_meta(placement=self.placement, lanes=[s.lane.name for s in self.lanes])
        log.info("workers: %d mutator(s) in %d lane(s) %s on %s, %d evaluator(s) on %s", len(mutators),
                 len(self.lanes), [s.lane.name for s in self.lanes], [w["label"] for w in where[:len(mutators)]],
                 n_eval, [w["label"] for w in where[len(mutators):]])
        self._eval_load = [0] * n_eval
        self._n_mut, self._n_eval = len(mutators), n_eval
        self._capacity = {"mutator": float(len(mutators)), "evaluator": float(n_eval)}
        # Ordered (reproducible) runs keep a fixed limit; others adapt it between the actor
        # count and loop.max_in_flight so that evaluators always have work queued but are
        # never flooded (see _adapt).
        # Each lane beyond the first may hold two batches per actor on top (running + queued), so a
        # slow lane does not take the in-flight slots the others need.
        self.max_in_flight = self.loop_cfg.max_in_flight + 2 * n_mut * (len(self.lanes) - 1)
        self._limit = self.max_in_flight if (self.ordered or not self.adaptive) else max(
            1, min(self.max_in_flight, len(mutators) + n_eval))
        self._limit_floor = max(1, min(self.max_in_flight, n_eval + len(self.lanes) - 1))

    def _stop_actors(self) -> None:
        import ray

        for actor in [a for s in self.lanes for a in s.actors] + getattr(self, "evaluators", []):
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 (a dead actor has nothing left to close)
                pass
            ray.kill(actor)

    # --------------------------------------------------------------- submission
    def _remaining(self) -> int:
        """Evaluations of the budget not yet spoken for.

        With one lane every job in flight holds its children's share of the budget (exact, dense ids,
        reproducible). With several lanes only jobs past their mutation do: a slow lane's batches
        must not keep the fast lanes waiting, so more may be written than the budget takes; a
        mutation that finishes when the budget is (nearly) spent is cut to what is left
        (:meth:`_room`), and unfinished ones are dropped when the run stops.
        """
        held = sum(len(j.ids) for j in self._jobs if not (self._oversubscribe and _mutating(j)))
        return self.budget.evaluations - self._count - held

    @property
    def _oversubscribe(self) -> bool:
        return len(self.lanes) > 1 and not self.ordered

    def _room(self, job: _Job) -> int:
        """How many children of ``job`` (just mutated) the budget still takes."""
        if not self._oversubscribe:
            return len(job.ids)
        if self._stop_reason is not None:
            return 0
        held = sum(len(j.ids) for j in self._jobs if j is not job and not _mutating(j))
        return max(0, min(len(job.ids), self.budget.evaluations - self._count - held))

    def _drop(self, job: _Job, keep: int) -> None:
        """Keep only the first ``keep`` children of a mutated job (0: drop it). Dropped children are never
        evaluated nor recorded; their ids stay unused."""
        if keep >= len(job.ids):
            return
        log.debug("budget: %d of %d children of a %s batch dropped", len(job.ids) - keep, len(job.ids), job.operator)
        job.ids, job.parents = job.ids[:keep], job.parents[:keep]
        if job.keys is not None:
            job.keys = job.keys[:keep]

    def _assign_ids(self, job: _Job) -> None:
        """Number a multi-lane job's children when their mutation is done (a no-op once numbered):
        batches dropped at the end of a run then leave no gaps in the evaluation ids."""
        if job.ids and job.ids[0] < 0:
            job.ids = self._alloc_ids(len(job.ids))

    def _budget_exhausted(self) -> str | None:
        if self._count >= self.budget.evaluations:
            return "evaluation budget"
        wall = self.budget.wall_seconds
        if wall is not None and self.store.run_wall_s() >= wall:
            return "wall-clock budget"
        tokens = self.budget.tokens
        if tokens is not None and self._tokens >= tokens:
            return "token budget"
        if self._duplicates > DUPLICATE_LIMIT * max(self.budget.evaluations, 1):
            return "duplicate limit (the mutators keep rewriting programs already evaluated)"
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
        for i, s in enumerate(sources):
            error = syntax_error(s)
            if error is not None:
                log.warning("seed program %d of environment %r does not parse (%s); it is recorded with status "
                            "syntax_error and left out", i, self.env.name, error)
            proposals.append(Proposal(source=s, parent_ids=(), mutator=SEED_MUTATOR,
                                      status=MutationStatus.OK if error is None else MutationStatus.SYNTAX_ERROR,
                                      meta={} if error is None else {"error": error}))
        job = _Job(index=self._job_index, ids=ids, parents=[[] for _ in ids], operator=SEED_MUTATOR, lane=-1,
                   variant=None, island=None, seed=0, proposals_ref=proposals, stage="evaluate",
                   keys=[program_key(p.source) if p.usable else None for p in proposals])
        self._job_index += 1
        self._claim(job)
        self._dispatch_evaluation(job)
        self._jobs.append(job)

    def _available_operators(self) -> list[str]:
        """Operators whose lane can take a batch now. A lane may hold its share of the in-flight limit
        plus one batch: lanes that keep up get their share, and a slow lane cannot take the slots of
        the others (which then get what it leaves). Ordered runs look at nothing that depends on
        timing (reproducibility)."""
        if self.ordered:
            return list(self._op_lane)
        shares = self.operators.shares()
        free = []
        for i, state in enumerate(self.lanes):
            ops = [o for o, lane in self._op_lane.items() if lane == i]
            cap = math.ceil(self._limit * sum(shares[o] for o in ops)) + 1
            if state.in_flight < cap:
                free.extend(ops)
        return free

    def _fill(self) -> None:
        while (not self._seeding and self._stop_reason is None and len(self.archive) > 0
               and sum(s.in_flight for s in self.lanes) < self._limit):
            n = min(self.batch_size, self._remaining())
            if n <= 0:
                return
            operator = self.operators.next(self._available_operators())
            if operator is None:
                return
            self._submit_mutation(operator, n)

    def _submit_mutation(self, operator: str, n: int) -> None:
        lane = self._op_lane[operator]
        state = self.lanes[lane]
        if self._oversubscribe:
            # children are numbered once written (see _assign_ids), so ids stay dense whatever is dropped;
            # the next id and the job's index make the seed unique across resumes too
            ids, seed = [-1] * n, _job_seed(self.seed, self._next_id, self._job_index)
        else:
            ids = self._alloc_ids(n)
            seed = _job_seed(self.seed, ids[0])
        rng = np.random.default_rng(seed)
        k = state.parents_per_child  # crossover mutators declare more
        island = None
        archive, selector = self.archive, self.selector
        if self.islands is not None:
            island = self.islands.pick()
            archive, selector = self.islands.archives[island], self.islands.selectors[island]
            self.islands.issued(island, n)
        chosen = selector.select(archive, n * k, rng)
        parents = [[_parent(e) for e in chosen[i * k:(i + 1) * k]] for i in range(n)]
        inspirations = None
        if state.inspirations > 0:
            pool = archive.elites()
            inspirations = [[_parent(e) for e in choose_inspirations(pool, exclude=[p.id for p in group],
                                                                    k=state.inspirations, rng=rng)]
                            for group in parents]
        variant = operator.split("/", 1)[1] if "/" in operator else None
        job = _Job(index=self._job_index, ids=ids, parents=parents, operator=operator, lane=lane, variant=variant,
                   island=island, seed=seed, inspirations=inspirations)
        self._job_index += 1
        self.operators.issued(operator, n)
        state.in_flight += 1
        self._dispatch_mutation(job)
        self._jobs.append(job)

    def _dispatch_mutation(self, job: _Job) -> None:
        state = self.lanes[job.lane]
        a = int(np.argmin(state.load))
        state.load[a] += 1
        job.mutator_actor = a
        job.stage = "mutate"
        if job.payload is None:
            job.payload = pack((job.parents, job.inspirations))
        job.proposals_ref, job.keys_ref = state.actors[a].mutate_packed.options(num_returns=2).remote(
            job.payload, job.seed, job.variant)

    def _claim(self, job: _Job) -> None:
        """Which children are copies of a program already evaluated (or being evaluated) in this run."""
        keys = job.keys or [None] * len(job.ids)
        if self.dedup is None:
            job.duplicate_of = [None] * len(job.ids)
        else:
            job.duplicate_of = [self.dedup.claim(key, i) for key, i in zip(keys, job.ids)]

    def _dispatch_evaluation(self, job: _Job) -> None:
        a = int(np.argmin(self._eval_load))
        self._eval_load[a] += 1
        job.evaluator_actor = a
        job.stage = "evaluate"
        skip = [i for i, d in enumerate(job.duplicate_of) if d is not None]
        # the children's ObjectRef is forwarded (no driver hop); children beyond len(ids) are ignored
        job.eval_ref = self.evaluators[a].evaluate_packed.remote(job.proposals_ref, job.ids, skip)

    # --------------------------------------------------------------- completion
    def _poll(self, timeout: float) -> None:
        """Advance jobs whose current stage finished; absorb finished jobs (in order if ordered)."""
        import ray

        if self.training is not None:
            self.training.poll()
        refs = {}
        for job in self._jobs:
            if job.stage == "mutate":
                refs[job.keys_ref] = job
            elif job.stage == "evaluate":
                refs[job.eval_ref] = job
        waiting = [job for job in self._jobs if job.stage == "wait"]
        now = time.time()
        for job in waiting:
            if job.retry_at <= now:
                self._redispatch(job)
                refs[job.keys_ref if job.stage == "mutate" else job.eval_ref] = job
        if not refs:
            if waiting:  # only batches waiting for a restarting actor: sleep until the first is due
                time.sleep(max(0.0, min(timeout, min(j.retry_at for j in waiting) - now)))
            return
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout, fetch_local=False)
        if ready:  # collect everything else that is already done, without waiting
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0, fetch_local=False)
        # in submission order: duplicates are claimed in the same order in every run with the same seed
        for ref in sorted(ready, key=lambda r: refs[r].index):
            job = refs[ref]
            if job.stage == "mutate":
                self.lanes[job.lane].load[job.mutator_actor] -= 1
                keys = self._check_stage(job, ref)
                if keys is not None:
                    job.keys = keys
                    keep = self._room(job)
                    if keep == 0:
                        self._jobs.remove(job)
                        self.lanes[job.lane].in_flight -= 1
                        continue
                    self._drop(job, keep)
                    self._assign_ids(job)
                    self._claim(job)
                    self._dispatch_evaluation(job)  # forward the ObjectRef: no driver hop for programs
            else:
                self._eval_load[job.evaluator_actor] -= 1
                try:
                    label, busy, results = unpack(ray.get(ref))
                    self._busy["evaluator"] += busy
                    self._adapt()
                    if isinstance(job.proposals_ref, list):
                        proposals = job.proposals_ref
                    else:
                        proposals = unpack(ray.get(job.proposals_ref))
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
        mutating = sum(sum(s.load) for s in self.lanes)
        if queued < self._n_eval and mutating >= len(self.lanes):
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

    def _check_stage(self, job: _Job, ref) -> list[str | None] | None:
        """The children's keys if the mutation is usable; otherwise retries or fails the job (None)."""
        import ray

        try:
            return ray.get(ref, timeout=0)  # surfaces a mutator exception or actor death
        except ray.exceptions.RayActorError as exc:
            self._retry(job, "mutate", exc)
        except ray.exceptions.RayTaskError as exc:
            self._fail_job(job, f"mutator raised: {_root_cause(exc)}")
        return None

    def _retry(self, job: _Job, stage: str, exc: Exception) -> None:
        import ray

        if isinstance(exc, ray.exceptions.ActorUnavailableError):
            # the actor is restarting (slow on a loaded machine): wait for it, backing off, rather than
            # spending the retries that are meant for workers that keep dying
            now = time.time()
            job.unavailable_since = job.unavailable_since or now
            if now - job.unavailable_since < UNAVAILABLE_PATIENCE_S:
                job.waits += 1
                job.retry_stage, job.retry_at = stage, now + min(0.25 * 2 ** job.waits, 5.0)
                job.stage = "wait"
                log.info("%s worker restarting; batch of %d re-issued in %.1f s", stage, len(job.ids),
                         job.retry_at - now)
                return
        job.retries += 1
        if job.retries > MAX_STAGE_RETRIES:
            self._fail_job(job, f"{stage} worker died {job.retries} times: {_root_cause(exc)}", lost=True)
            return
        log.warning("%s worker died (%s); re-issuing batch of %d", stage, _root_cause(exc), len(job.ids))
        job.retry_stage = stage
        self._redispatch(job)

    def _redispatch(self, job: _Job) -> None:
        if job.retry_stage == "mutate":
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
        if job.stage == "mutate":  # its records count toward the budget like any child
            self._drop(job, self._room(job))
        self._assign_ids(job)
        proposals: list[Proposal] | None = None
        if job.stage == "evaluate":
            if isinstance(job.proposals_ref, list):
                proposals = job.proposals_ref
            else:
                try:
                    proposals = unpack(ray.get(job.proposals_ref, timeout=30))
                except Exception:  # noqa: BLE001 (the mutation's result is gone with its worker: no programs to keep)
                    proposals = None
        if proposals is None:
            name = job.operator.split("/", 1)[0] if job.lane >= 0 else job.operator
            proposals = [Proposal(source=None, parent_ids=tuple(p.id for p in g), mutator=name,
                                  status=MutationStatus.MUTATOR_ERROR, meta={"error": reason}) for g in job.parents]
        if not job.duplicate_of:
            job.duplicate_of = [None] * len(job.ids)
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
        if job.lane >= 0:
            self.lanes[job.lane].in_flight -= 1
        now = time.time()
        n = len(job.ids)
        keys = job.keys or [None] * n
        duplicate_of = job.duplicate_of or [None] * n
        parent_ids: list[tuple[int, ...]] = []
        generations: list[int] = []
        candidates: list[int] = []
        elites: list[Elite] = []
        for i, (eval_id, proposal, result) in enumerate(zip(job.ids, proposals, results)):
            group = job.parents[i]
            # the parents the mutator says it used (a GP child with p_crossover uses one of the two it
            # was given), when they are among those it was given; otherwise all it was given
            used = group
            if proposal.parent_ids and len(proposal.parent_ids) < len(group):  # fewer named: look them up
                by_id = {p.id: p for p in group}
                named = [by_id[pid] for pid in proposal.parent_ids if pid in by_id]
                if len(named) == len(proposal.parent_ids):
                    used = named
            parent_ids.append(tuple(p.id for p in used) or tuple(proposal.parent_ids))
            generations.append(1 + max(p.generation for p in used) if used else 0)
            if result is not None and result.status is EvalStatus.OK:
                candidates.append(i)
                elites.append(Elite(id=eval_id, cell=-1, source=proposal.source or "", fitness=float(result.fitness),
                                    descriptor=tuple(result.descriptor), parent_ids=parent_ids[i],
                                    mutator=proposal.mutator, generation=generations[i], created_at=now))
        outcomes: list[AddOutcome | None] = [None] * n
        feedback: list[AddOutcome | None] = [None] * n  # the archive the child was written for
        island_events: list[dict] = []
        if elites:
            for i, out in zip(candidates, self.archive.add(elites)):
                outcomes[i] = feedback[i] = out
            if self.islands is not None:
                if job.operator == SEED_MUTATOR:
                    self.islands.seed_all([e for e in elites])
                else:
                    for i, out in zip(candidates, self.islands.add(job.island, elites)):
                        feedback[i] = out
        records: list[EvaluationRecord] = []
        for i, (eval_id, proposal, result) in enumerate(zip(job.ids, proposals, results)):
            meta = dict(proposal.meta)
            common = dict(
                id=eval_id, parent_ids=parent_ids[i], mutator=proposal.mutator, generation=generations[i],
                source=proposal.source,
                mutation_status=None if proposal.mutator == SEED_MUTATOR else proposal.status._value_,
                tokens_in=proposal.tokens_in, tokens_out=proposal.tokens_out, model_s=proposal.model_seconds,
                worker=worker or None, created_at=now, program_key=keys[i], island=job.island,
                variant=job.variant or meta.get("variant"),
            )
            if duplicate_of[i] is not None:
                records.append(EvaluationRecord(status=_DUPLICATE, duplicate_of=duplicate_of[i],
                                                error=f"the same program as evaluation {duplicate_of[i]}",
                                                info={"mutation": meta} if meta else {}, **common))
                continue
            if result is None:  # the mutator produced no program; its status says why
                records.append(EvaluationRecord(status=proposal.status._value_, error=meta.get("error"),
                                                info={"mutation": meta} if meta else {}, **common))
                continue
            info = dict(result.info)
            if meta:
                info["mutation"] = meta
            status, error, cell, archive_status = result.status._value_, result.error, None, None
            out = outcomes[i]
            if out is not None:
                if out.status is None:  # rejected: outside bounds under the "reject" policy
                    status = _OUT_OF_BOUNDS
                    error = (f"descriptor {list(result.descriptor)} outside bounds "
                             f"{list(zip(self.space.lower, self.space.upper))}")
                else:
                    cell, archive_status = out.cell, out.status._value_
            if self.dedup is not None:
                self.dedup.settle(keys[i], eval_id, status)
            records.append(EvaluationRecord(
                status=status, fitness=result.fitness, descriptor=result.descriptor, cell=cell,
                archive_status=archive_status, error=error, info=info, run_s=result.run_s,
                score_s=result.score_s, eval_s=result.total_s, **common,
            ))
        operators_rows: list[dict] = []
        if job.operator != SEED_MUTATOR:
            selector = self.selector if self.islands is None else self.islands.selectors[job.island]
            selector.update(parent_ids, [o or _NOT_OFFERED for o in feedback])
            if self.islands is not None:  # the run-wide selector learns too (it is used after a resume)
                self.selector.update(parent_ids, [o or _NOT_OFFERED for o in outcomes])
            # a duplicate improves nothing and costs its model time: an operator that keeps repeating
            # programs loses its share
            self.operators.feedback(job.operator, [(feedback[i] or _NOT_OFFERED).improvement for i in range(n)],
                                    [proposals[i].model_seconds + (results[i].total_s if results[i] else 0.0)
                                     for i in range(n)])
        counted = sum(r.status != _DUPLICATE for r in records)
        self._count += counted
        self._duplicates += len(records) - counted
        self._tokens += sum(r.tokens_in + r.tokens_out for r in records)
        if self.islands is not None and job.operator != SEED_MUTATOR:
            island_events = self.islands.step(self._count)
        stats = self.archive.stats()
        mutator_util, evaluator_util = self._utilisation()
        metrics = dict(evaluations=self._count, wall_s=self.store.run_wall_s(), num_elites=stats.num_elites,
                       coverage=stats.coverage, qd_score=stats.qd_score, norm_qd_score=stats.norm_qd_score,
                       max_fitness=stats.max_fitness, mean_fitness=stats.mean_fitness, tokens=self._tokens,
                       in_flight=self._limit, mutator_util=mutator_util, evaluator_util=evaluator_util)
        if len(self.operators.operators) > 1:
            operators_rows = self.operators.rows(self._count)
        self.store.record(records, metrics=metrics, operators=operators_rows,
                          islands=self.islands.rows(self._count) if self.islands is not None else (),
                          island_events=island_events)
        if self.training is not None and job.operator != SEED_MUTATOR:
            self.training.absorbed(records, job.parents, evaluations=self._count,
                                   stopping=self._stop_reason is not None or self._budget_exhausted() is not None)
        if self._bar is not None:
            self._bar.update(counted)
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
        resumed = self.store.count() > 0
        if resumed:
            self._replay()
            log.info("resumed: %d evaluations in the store, %d elites rebuilt", self._count, len(self.archive))
        if self.dedup is not None:  # the keys this session writes are this Python's
            self.store.set_meta(dedup_key_version=KEY_VERSION)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        end_reason = "error"
        try:
            self._start_actors()
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
                if self._stop_reason is not None:
                    self._abandon_mutations()
                    if not self._jobs:
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
            if self.training is not None:
                try:
                    self.training.close()
                except Exception as exc:  # noqa: BLE001 (keep the run's own error visible; actors still stop)
                    log.error("could not close in-run fine-tuning: %s", exc)
            self._stop_actors()
            try:
                self.store.end_session(end_reason)
            except Exception as exc:  # noqa: BLE001 (e.g. the disk is full: keep the original error visible)
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
        """Per-mutator statistics of the whole run into ``meta.mutator_stats`` (and per mutator and model
        version into ``meta.mutator_version_stats``); returns them as a table, per version when a
        mutator's children were written by several weights (in-run fine-tuning).

        Once per session, after the loop: one GROUP BY over the store (per version; the per-mutator rows
        are their sums), off the hot path but still ~5 µs a stored child on 2 cores.
        """
        from elm.stats import format_stats, merge_versions, mutator_stats

        try:
            per_version = mutator_stats(self.store, by_version=True)
            stats = merge_versions(per_version)
            self.store.set_meta(mutator_stats=[s.to_dict() for s in stats],
                                mutator_version_stats=[s.to_dict() for s in per_version])
        except Exception as exc:  # noqa: BLE001 (statistics must never fail a finished run)
            log.warning("could not record per-mutator statistics: %s", exc)
            return ""
        if len(per_version) > len(stats):  # some mutator wrote with several weights (fine-tuning): per version
            return format_stats(per_version)
        return format_stats(stats)

    def _abandon_mutations(self) -> None:
        """Once the run stops, batches of a multi-lane run still being written are not waited for
        (their children would not fit the budget, or the run was told to stop)."""
        if not self._oversubscribe:
            return
        for job in [j for j in self._jobs if _mutating(j)]:
            self._jobs.remove(job)
            self.lanes[job.lane].in_flight -= 1
            if job.stage == "mutate":  # a waiting job's actor load was already given back
                self.lanes[job.lane].load[job.mutator_actor] -= 1

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
