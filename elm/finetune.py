"""Training data for a mutator's model from a run store: its successful children as prompt/completion pairs.

ELM's later stages train a model on what the search found. :func:`export_examples` reads a run
store and writes JSON Lines that ``datasets.load_dataset("json", data_files=...)`` loads, one row
per *successful* child: evaluated ``ok`` and either inserted into the archive (``new_cell`` /
``improved``) or scoring above its best parent. Each row is the pair with which the child's
operator writes it, in the operator's exact format, rebuilt by the operator class's
:meth:`elm.mutator.Mutator.training_example` hook (resolved from the run's ``_target_``; the engine
imports no plugin package). Successes of other operators (the AST baseline) can be re-expressed in
a language-model operator's format (``reexpress``): a baseline child that changed one assignment
line becomes a ``lines`` example, a changed program a diff.

Row fields: ``prompt``, ``completion``, ``messages`` (chat operators: ``[{role, content}]``, the
prompt then being the reply's prefill; null otherwise), ``format`` (e.g. ``rewrite/lines``),
``operator`` (whose format), ``written_by`` (the mutator that wrote the child), ``origin``
(``own`` or ``reexpressed``), and provenance: ``run`` (the run directory), ``evaluation_id``,
``parent_ids``, ``fitness``, ``parent_fitness``, ``fitness_gain`` (child minus best parent),
``archive_status``, ``environment``, ``model_version`` (of the model that wrote it; null for
operators without a model).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elm.environment import Environment
from elm.mutator import Lane, Mutator, TrainingExample, merge_variant
from elm.plugins import PluginSpec, resolve_class
from elm.store import EvaluationRecord, RunStore, StoreError
from elm.types import EvalStatus, Parent, TaskContext

__all__ = ["ExportSummary", "FinetuneError", "TrainBudget", "Trainer", "example_for", "export_examples",
           "operator_classes", "successful"]

_INSERTED = ("new_cell", "improved")


class FinetuneError(ValueError):
    """Training data cannot be exported or a model cannot be trained (the message says what to do)."""


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_examples` wrote: ``rows`` in total, per ``(operator, origin)``, and what was left out."""

    path: Path
    rows: int
    successes: int
    by_operator: Mapping[str, int] = field(default_factory=dict)  # "operator/origin" -> rows
    unexpressed: int = 0  # successes no operator's format could express
    repeated: int = 0  # pairs identical to one already written


@dataclass(frozen=True)
class TrainBudget:
    """What one in-run training round may spend (from ``finetune.*``): optimizer steps, wall seconds
    (pauses included), torch CPU threads, and the share of its wall time spent computing (the rest
    it sleeps between steps, leaving the cores to evaluation)."""

    max_steps: int
    max_seconds: float
    threads: int
    duty_cycle: float = 1.0


class Trainer(ABC):
    """Trains an operator's model on exported pairs during a run (``finetune.trainer``, a plugin).

    Built from the ``finetune.trainer`` node's arguments inside the trainer's Ray actor
    (:mod:`elm.intrain`); the engine finds it by ``_target_`` and imports no plugin package.
    """

    def warm_up(self) -> None:
        """Load what every round needs (libraries) when the trainer actor starts, so the first round
        does not wait for it. Default: nothing."""

    @abstractmethod
    def train(self, *, data: Path, out: Path, lane: Mapping[str, Any], init: Path | None,
              budget: TrainBudget) -> Mapping[str, Any]:
        """Train on the JSON Lines pairs in ``data`` (:func:`export_examples`) and save, in the new
        directory ``out``, weights that the lane's mutator loads with :meth:`Mutator.load_adapter`.

        ``lane``: the operator's config node (its model, backend...); ``init``: the last good
        adapter of this run to continue from (None: start from the lane's own model). Returns what
        was written to ``out``'s provenance file; it must hold ``version`` (recorded with every
        child the new weights write). Raises on failure (the run logs it and keeps its weights).
        """


def successful(status: str, archive_status: str | None, fitness: float | None, parent_fitness: float | None) -> bool:
    """A child worth learning from: valid, and inserted into the archive or better than its best parent."""
    if status != EvalStatus.OK.value or fitness is None:
        return False
    return archive_status in _INSERTED or (parent_fitness is not None and fitness > parent_fitness)


def operator_classes(node: Any) -> dict[str, tuple[type[Mutator], Lane]]:
    """Each operator (lane) of the mutator config ``node``: its class and its lane."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise FinetuneError("the run's stored config has no mutator with a _target_; is this an ELM run store?")
    try:
        cls = resolve_class(str(node["_target_"]), Mutator, what="mutator")
        lanes = cls.lanes(node)
        return {lane.name: (resolve_class(str(lane.node["_target_"]), Mutator, what=f"mutator {lane.name}"), lane)
                for lane in lanes}
    except ValueError as exc:
        raise FinetuneError(f"cannot load the run's mutator classes: {exc}") from exc


def _task(config: Mapping[str, Any]) -> tuple[TaskContext, str]:
    try:
        env = PluginSpec.from_config(config.get("env") or {}, what="env").build(Environment, what="env")
    except Exception as exc:  # a user's environment may raise anything while it is built
        raise FinetuneError(f"cannot build the run's environment (for its task description): {exc}") from exc
    return env.task(), env.name


def export_examples(run_dir: str | os.PathLike, out: str | os.PathLike, *, reexpress: Sequence[str] = (),
                    operators: Sequence[str] | None = None, min_gain: float | None = None,
                    into: str | None = None) -> ExportSummary:
    """Write the run's successful children as training pairs to ``out`` (JSON Lines); see the module doc.

    Args:
        run_dir: a run directory (or its ``run.db``).
        out: the JSON Lines file to write (replaced atomically).
        reexpress: operators (lane names, e.g. ``"smollm2"``) in whose format the successes of
            the run's *other* operators are also written (rows with ``origin: reexpressed``).
        operators: only the children of these operators (default: every operator).
        min_gain: keep only children whose fitness exceeds their best parent's by more than this
            (default: every success, also an insertion into a new cell at a lower fitness).
        into: write only pairs in this operator's format (its own children, and with ``reexpress``
            the others' re-expressed): the data for training that one operator's model.

    Raises FinetuneError for a missing run, a run without children, an unknown operator name, or
    when no row could be written.
    """
    run_dir = Path(run_dir)
    try:
        store = RunStore.open(run_dir, readonly=True)
    except StoreError as exc:
        raise FinetuneError(str(exc)) from exc
    with store:
        config = store.config()
        lanes = operator_classes(config.get("mutator"))
        unknown = sorted((set(reexpress) | set(operators or ()) | ({into} if into else set())) - set(lanes))
        if unknown:
            raise FinetuneError(f"unknown operator(s) {unknown}: this run's operators are {sorted(lanes)}")
        task, env_name = _task(config)
        children = store.count() - store.count(mutator="seed")
        if children == 0:
            raise FinetuneError(f"run {run_dir} has no children yet (only its seeds): run or resume it first")
        rows, seen = [], set()
        counts: Counter[str] = Counter()
        successes = unexpressed = repeated = 0
        for rec in store.iter_evaluations(status=EvalStatus.OK.value):
            if rec.mutator == "seed" or (operators is not None and rec.mutator not in operators):
                continue
            parents = []
            for pid in rec.parent_ids:
                got = store.get(pid)
                if got is not None and got.source is not None:
                    parents.append(Parent(id=got.id, source=got.source, fitness=got.fitness or 0.0,
                                          descriptor=tuple(got.descriptor or ()), generation=got.generation))
            best = max((p.fitness for p in parents), default=None)
            if not parents or not successful(rec.status, rec.archive_status, rec.fitness, best):
                continue
            gain = float(rec.fitness) - best
            if min_gain is not None and not gain > min_gain:
                continue
            successes += 1
            meta = rec.info.get("mutation") if isinstance(rec.info.get("mutation"), Mapping) else {}
            targets = [(rec.mutator, "own")] if rec.mutator in lanes else []
            targets += [(name, "reexpressed") for name in reexpress if name != rec.mutator]
            if into is not None:
                targets = [t for t in targets if t[0] == into]
            wrote = False
            for name, origin in targets:
                example = example_for(lanes, into=name, rec=rec, parents=parents, task=task)
                if example is None:
                    continue
                key = (example.format, example.messages, example.prompt, example.completion)
                wrote = True
                if key in seen:
                    repeated += 1
                    continue
                seen.add(key)
                counts[f"{name}/{origin}"] += 1
                rows.append(_row(example, name, origin, rec, parents, best, gain, run_dir, env_name,
                                 meta.get("model_version") if origin == "own" else None))
            unexpressed += not wrote
    if not rows:
        raise FinetuneError(
            f"no training pairs in run {run_dir}: {successes} successful children (of {children}), none "
            f"in a language-model operator's format (operators: {sorted(lanes)}); pass reexpress=[an LM "
            "operator] (--reexpress NAME) to write the other operators' successes in its format")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)  # never leave a half-written dataset behind
    return ExportSummary(path=out, rows=len(rows), successes=successes, by_operator=dict(counts),
                         unexpressed=unexpressed, repeated=repeated)


def example_for(lanes: Mapping[str, tuple[type[Mutator], Lane]], *, into: str, rec: EvaluationRecord,
                parents: Sequence[Parent], task: TaskContext) -> TrainingExample | None:
    """The pair with which operator ``into`` writes the child ``rec`` (its own child, with the variant
    and ``info.mutation`` it was written with; another operator's child re-expressed), or None.

    ``lanes``: :func:`operator_classes`. Raises FinetuneError naming the evaluation when the
    operator's hook fails or returns something else than a TrainingExample.
    """
    cls, lane = lanes[into]
    own = rec.mutator == into
    node = lane.node
    if own and rec.variant and rec.variant in lane.variants:
        node = merge_variant(node, lane.variants[rec.variant])
    meta = rec.info.get("mutation") if own and isinstance(rec.info.get("mutation"), Mapping) else {}
    try:
        example = cls.training_example(node, parents=parents, child=rec.source, task=task, meta=meta)
    except Exception as exc:  # a plugin's hook failing on one child must name it
        raise FinetuneError(f"{cls.__name__}.training_example failed on evaluation {rec.id}: "
                            f"{type(exc).__name__}: {exc}") from exc
    if example is not None and not isinstance(example, TrainingExample):
        raise FinetuneError(f"{cls.__name__}.training_example returned {type(example).__name__}, "
                            "expected a TrainingExample or None")
    return example


def _row(example: TrainingExample, operator: str, origin: str, rec, parents: Sequence[Parent], best: float,
         gain: float, run_dir: Path, env_name: str, model_version: Any) -> dict[str, Any]:
    return {
        "prompt": example.prompt,
        "completion": example.completion,
        "messages": [{"role": r, "content": c} for r, c in example.messages] or None,
        "format": example.format,
        "operator": operator,
        "written_by": rec.mutator,
        "origin": origin,
        "run": str(run_dir.resolve()),
        "environment": env_name,
        "evaluation_id": rec.id,
        "parent_ids": [p.id for p in parents],
        "fitness": rec.fitness,
        "parent_fitness": best,
        "fitness_gain": gain,
        "archive_status": rec.archive_status,
        "model_version": model_version,
    }


if __name__ == "__main__":
    # `python -m elm.finetune export|train ...` (the spelling) runs the CLI of the default trainer
    # plugin; it is found by name, as every plugin is, so the engine does not import it.
    import runpy

    runpy.run_module("mutators.finetune", run_name="__main__", alter_sys=True)
