"""Fine-tuning a lane's model during the run (``finetune.enabled``): ELM's second stage, in the loop.

The driver counts *examples*: the run's successful children (:func:`elm.finetune.successful`) that
the trained lane's format can express (its ``training_example`` hook, through
:func:`elm.finetune.example_for`), the lane's own and, with ``finetune.reexpress``, every lane's.
Every ``finetune.every_examples`` new ones it starts a *round* in a trainer actor
(:class:`TrainerWorker`): the actor exports the run's successes in the lane's exact format from the
run store (:func:`elm.finetune.export_examples`, read-only; the driver keeps writing) and trains
an adapter with the configured :class:`elm.finetune.Trainer` (found by ``_target_``), continuing
the last good adapter (``warm_start``). When the round is done the lane's mutator actors load the
adapter between batches (an actor runs one call at a time, so batches already queued finish with
the old weights); every child records the version of the weights that wrote it.

One round at a time; successes that arrive while it trains count toward the next. A round that
fails (an export without expressible pairs, a trainer error, a dead trainer) is logged and stored
with its error, and the lanes keep the last good adapter. Bounded cost: the trainer actor uses
``finetune.threads`` torch threads, runs at ``finetune.nice``, and sleeps between steps so that
steps take at most ``finetune.duty_cycle`` of its wall time.

On disk, under the run directory: ``adapters/<lane>/v001`` ... (one directory per round, with its
``elm_adapter.json`` provenance) and the round's training data ``v001.jsonl``;
``adapters/<lane>/current.json`` names the adapter the lane runs with, and is read by every
mutator actor the lane starts (a restarted actor, a resumed run). The store's ``adapters`` table has
one row per round (:class:`elm.types.AdapterStatus`), numbered across resumes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from elm.config import FinetuneConfig
from elm.finetune import TrainBudget, Trainer, example_for, export_examples, successful
from elm.mutator import Lane, Mutator
from elm.plugins import PluginSpec, resolve_class
from elm.store import EvaluationRecord, RunStore
from elm.types import SEED_MUTATOR, AdapterStatus, Parent, TaskContext

log = logging.getLogger("elm")

__all__ = ["ADAPTERS_DIR", "InRunTraining", "TrainerWorker", "state_file"]

ADAPTERS_DIR = "adapters"
STATE_FILE = "current.json"
#: how long the driver waits for the lane's actors to load an adapter in ``finetune.blocking`` mode (s)
LOAD_TIMEOUT_S = 600.0


def state_file(run_dir: str | os.PathLike, lane: str) -> Path:
    """The file naming the adapter ``lane`` runs with (absent: the lane's configured weights)."""
    return Path(run_dir) / ADAPTERS_DIR / lane / STATE_FILE


class TrainerWorker:
    """The trainer's Ray actor: one call per round (export, then train). Plain class, testable in-process."""

    def __init__(self, trainer_node: Mapping[str, Any], *, nice: int = 0):
        if nice:
            # before torch starts its thread pool: the pool's threads inherit the niceness
            os.nice(nice)
        self.trainer = PluginSpec.from_config(trainer_node, what="finetune.trainer").build(
            Trainer, what="finetune.trainer")
        self.trainer.warm_up()  # while the run starts, not when the first round is due

    def ping(self) -> int:
        return os.getpid()

    def round(self, *, run_dir: str, lane: str, lane_node: Mapping[str, Any], out: str, init: str | None,
              budget: TrainBudget, reexpress: bool, min_gain: float | None) -> dict[str, Any]:
        """Export the run's successes in ``lane``'s format to ``<out>.jsonl`` and train into ``out``.

        Returns ``{version, examples, seconds, meta}`` (``meta``: the trainer's provenance). A
        failure removes the partial ``out`` and raises.
        """
        start = time.perf_counter()
        out_dir = Path(out)
        data = out_dir.with_name(out_dir.name + ".jsonl")
        try:
            summary = export_examples(run_dir, data, operators=None if reexpress else [lane],
                                      reexpress=[lane] if reexpress else (), min_gain=min_gain, into=lane)
            meta = dict(self.trainer.train(data=data, out=out_dir, lane=lane_node,
                                           init=Path(init) if init else None, budget=budget))
            if "version" not in meta:
                raise ValueError(f"{type(self.trainer).__name__}.train returned no 'version'")
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        return {"version": str(meta["version"]), "examples": summary.rows, "seconds": time.perf_counter() - start,
                "meta": meta}


class InRunTraining:
    """The driver's side of in-run fine-tuning (see the module doc). Methods are called from the loop."""

    def __init__(self, *, cfg: FinetuneConfig, store: RunStore, run_dir: str, lanes: Sequence[Lane],
                 task: TaskContext):
        self.cfg = cfg
        self.task = task
        # the classes whose training_example hook says which successes are examples (lane nodes: a
        # mixture's components when the run has lanes, else the one mutator)
        self._classes = {
            lane.name: (resolve_class(str(lane.node["_target_"]), Mutator, what=f"mutator {lane.name}"), lane)
            for lane in lanes}
        self.store = store
        self.run_dir = run_dir
        self.lanes = {lane.name: lane for lane in lanes}
        if cfg.operator is not None and cfg.operator not in self.lanes:
            raise ValueError(f"finetune.operator={cfg.operator!r} is not one of this run's operators "
                             f"{sorted(self.lanes)}")
        self.lane: str | None = cfg.operator
        try:  # the trainer's arguments are checked here, before Ray starts (it is built again in its actor)
            PluginSpec.from_config(cfg.trainer, what="finetune.trainer").build(Trainer, what="finetune.trainer")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"finetune.trainer: {exc}") from None
        self.actors: list[Any] = []
        self.trainer: Any = None
        self.pending = 0  # examples not yet given to a round
        self.round = 0  # the last round's number
        self.good: dict[str, Any] | None = None  # the last good round's row
        self._inflight: dict[str, Any] | None = None  # the running round's row
        self._ref: Any = None
        self._loads: list[Any] = []

    def state_file(self, lane: str) -> str:
        return str(state_file(self.run_dir, lane))

    # ------------------------------------------------------------------ start
    def start(self, *, versions: Mapping[str, str | None], actors: Mapping[str, list[Any]]) -> None:
        """Pick the lane (``versions``: each lane's model version, None without a model), pick up where a
        resumed run stopped, and start the trainer actor."""
        import ray

        with_model = [name for name, v in versions.items() if v is not None]
        if self.lane is None:
            if not with_model:
                raise ValueError(f"finetune: none of this run's operators {sorted(versions)} has a model that can "
                                 "load fine-tuned weights (the hf backend can): use a language-model mutator, e.g. "
                                 "mutator=smollm2_gp, or finetune.enabled=false")
            if len(with_model) != 1:
                raise ValueError(f"finetune: {len(with_model)} of this run's operators {sorted(versions)} have a "
                                 f"model that can load adapters ({with_model}); name one with finetune.operator")
            self.lane = with_model[0]
        elif versions.get(self.lane) is None:
            raise ValueError(f"finetune.operator={self.lane!r} has no model that can load fine-tuned weights "
                             "(the hf backend can); choose a language-model lane")
        cls = self._classes[self.lane][0]
        if getattr(cls.training_example, "__func__", None) is Mutator.training_example.__func__:
            raise ValueError(f"finetune: operator {self.lane!r} ({cls.__name__}) has no prompt format to train on "
                             "(no training_example); with a mixture, keep search.lanes=true and name the "
                             "language-model component in finetune.operator")
        self.actors = list(actors[self.lane])
        rows = self.store.adapters()
        for row in rows:
            if row["status"] == AdapterStatus.TRAINING.value:  # the run was killed during this round
                self._finish(row, AdapterStatus.ABANDONED, error="the run stopped during this round")
        self.round = max((r["id"] for r in rows), default=0)
        good = [r for r in rows if r["status"] == AdapterStatus.OK.value and r["lane"] == self.lane]
        self.good = good[-1] if good else None
        if self.good is not None and versions[self.lane] != self.good["version"]:
            # killed between recording the round and naming it in the state file: load it now
            ray.get([a.load_adapter.remote(self.good["path"]) for a in self.actors])
            self._name(self.good)
        since = max((r["last_id"] for r in rows), default=-1)
        self.pending = sum(self._successes(since))
        options = {"num_cpus": self.cfg.num_cpus, "num_gpus": self.cfg.num_gpus, "max_restarts": -1,
                   "max_task_retries": 0}
        self.trainer = ray.remote(TrainerWorker).options(**options).remote(dict(self.cfg.trainer), nice=self.cfg.nice)
        log.info("in-run fine-tuning of %s: every %d examples (%d pending), round %d next; weights: %s",
                 self.lane, self.cfg.every_examples, self.pending, self.round + 1,
                 self.good["version"] if self.good else versions[self.lane])

    def _successes(self, since: int):
        """1 per example among the children with id > ``since`` (from the store, on resume)."""
        for rec in self.store.iter_evaluations(status="ok"):
            if rec.id <= since or not self._counts(rec.mutator):
                continue
            parents = [Parent(id=p.id, source=p.source, fitness=p.fitness, descriptor=tuple(p.descriptor or ()),
                              generation=p.generation)
                       for p in (self.store.get(i) for i in rec.parent_ids)
                       if p is not None and p.fitness is not None and p.source is not None]
            yield int(self._example(rec, parents))

    def _counts(self, mutator: str) -> bool:
        return mutator != SEED_MUTATOR and (self.cfg.reexpress or mutator == self.lane)

    def _example(self, rec: EvaluationRecord, parents: Sequence[Parent]) -> bool:
        """Whether child ``rec`` is a training example for the lane: a success its format can express
        (the rule of :func:`elm.finetune.export_examples`; duplicate pairs are counted each time)."""
        best = max((p.fitness for p in parents), default=None)
        if not parents or not successful(rec.status, rec.archive_status, rec.fitness, best):
            return False
        if self.cfg.min_gain is not None and not float(rec.fitness) - best > self.cfg.min_gain:
            return False
        try:
            return example_for(self._classes, into=self.lane, rec=rec, parents=parents, task=self.task) is not None
        except ValueError as exc:  # the operator's hook failed on this child: not an example (logged)
            log.debug("not counted as an example: %s", exc)
            return False

    # ------------------------------------------------------------------ the loop
    def absorbed(self, records: Sequence[EvaluationRecord], parents: Sequence[Sequence[Parent]], *,
                 evaluations: int, stopping: bool) -> None:
        """Count a job's examples; start a round when enough are pending (``parents[i]``: the parents
        ``records[i]`` was written from, of which it used those in its ``parent_ids``)."""
        for rec, group in zip(records, parents):
            if self._counts(rec.mutator):
                # the parents the child used, as the store has them (and as a resume counts them)
                used = [p for p in group if p.id in rec.parent_ids] or list(group)
                self.pending += self._example(rec, used)
        if self.pending >= self.cfg.every_examples and self._inflight is None and not stopping:
            self._submit(evaluations=evaluations, last_id=self.store.max_id())

    def _submit(self, *, evaluations: int, last_id: int) -> None:
        self.round += 1
        out = Path(self.run_dir) / ADAPTERS_DIR / self.lane / f"v{self.round:03d}"
        shutil.rmtree(out, ignore_errors=True)  # left by a round that was killed
        row = {"id": self.round, "lane": self.lane, "status": AdapterStatus.TRAINING.value, "version": None,
               "path": str(out), "evaluations": evaluations, "last_id": last_id, "examples": None,
               "started_at": time.time(), "seconds": None, "error": None, "info": {}}
        self.store.record_adapter(row)
        self._inflight = row
        log.info("fine-tuning round %d of %s: %d new examples", self.round, self.lane, self.pending)
        self.pending = 0
        budget = TrainBudget(max_steps=self.cfg.max_steps, max_seconds=self.cfg.max_seconds,
                             threads=self.cfg.threads, duty_cycle=self.cfg.duty_cycle)
        init = self.good["path"] if self.good and self.cfg.warm_start else None
        self._ref = self.trainer.round.remote(
            run_dir=self.run_dir, lane=self.lane, lane_node=dict(self.lanes[self.lane].node), out=str(out),
            init=init, budget=budget, reexpress=self.cfg.reexpress, min_gain=self.cfg.min_gain)
        if self.cfg.blocking:
            self._wait()

    def _wait(self) -> None:
        import ray

        ray.wait([self._ref], timeout=None)
        self.poll()
        if self._loads:
            ray.wait(self._loads, num_returns=len(self._loads), timeout=LOAD_TIMEOUT_S)
            self.poll()

    def poll(self) -> None:
        """Advance the round without waiting: when trained, send it to the lane's actors; when loaded, record it."""
        import ray

        if self._ref is not None:
            ready, _ = ray.wait([self._ref], timeout=0)
            if not ready:
                return
            ref, self._ref = self._ref, None
            row = self._inflight
            try:
                result = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 (a trainer error or a dead trainer: the run goes on)
                error = _root(exc)
                log.warning("fine-tuning round %d of %s failed; the lane keeps %s: %s", row["id"], self.lane,
                            self.good["version"] if self.good else "its weights", error)
                shutil.rmtree(row["path"], ignore_errors=True)
                self._finish(row, AdapterStatus.FAILED, error=error)
                self._inflight = None
                return
            row.update(version=result["version"], examples=result["examples"], seconds=result["seconds"],
                       info=result["meta"])
            self.store.record_adapter(row)
            self._loads = [a.load_adapter.remote(row["path"]) for a in self.actors]
        if self._inflight is not None and self._loads:
            ready, _ = ray.wait(self._loads, num_returns=len(self._loads), timeout=0)
            if len(ready) < len(self._loads):
                return
            loads, self._loads = self._loads, []
            row, self._inflight = self._inflight, None
            errors = []
            for ref in loads:
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 (that actor keeps its weights)
                    errors.append(_root(exc))
            if errors:
                log.warning("adapter %s of round %d could not be loaded by %d of %d actor(s) of %s: %s",
                            row["version"], row["id"], len(errors), len(loads), self.lane, errors[0])
                self._finish(row, AdapterStatus.LOAD_FAILED, error=errors[0])
                return
            self._finish(row, AdapterStatus.OK)
            self.good = row
            self._name(row)
            info = row["info"].get("result", {}) if isinstance(row["info"], Mapping) else {}
            log.info("%s now writes with %s (round %d: %d pairs, %s steps, %.1f s)", self.lane, row["version"],
                     row["id"], row["examples"] or 0, info.get("steps", "?"), row["seconds"] or 0.0)

    def _name(self, row: Mapping[str, Any]) -> None:
        """Name ``row``'s adapter in the lane's state file (read by every actor the lane starts)."""
        path = Path(self.state_file(self.lane))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"path": row["path"], "version": row["version"], "round": row["id"]}))
        os.replace(tmp, path)  # a restarting actor never reads half a file

    def _finish(self, row: dict[str, Any], status: AdapterStatus, *, error: str | None = None) -> None:
        row.update(status=status.value, error=error)
        if row.get("seconds") is None:
            row["seconds"] = time.time() - row["started_at"]
        self.store.record_adapter(row)

    def close(self) -> None:
        """At the end of the run: a round still training is abandoned; the trainer actor is stopped."""
        import ray

        if self._inflight is not None:
            if self._ref is not None:
                shutil.rmtree(self._inflight["path"], ignore_errors=True)
            self._finish(self._inflight, AdapterStatus.ABANDONED, error="the run stopped before the round finished")
            self._inflight = None
        if self.trainer is not None:
            ray.kill(self.trainer)
            self.trainer = None


def _root(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc.__cause__ or exc
    text = f"{type(cause).__name__}: {cause}".strip().splitlines()
    return text[-1][-500:] if text else type(exc).__name__
