"""Synthetic runs and callback payloads for testing and benchmarking the dashboard.

:func:`make_synthetic_run` writes a finished run straight through :class:`elm.store.RunStore`
(realistic sources, status mix and archive) in a fraction of a second for a few thousand
evaluations; :func:`dash_payload` builds the request a browser sends for one callback. The
dashboard tests and ``benchmarks/bench_dashboard.py`` share them from here.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from elm.archive import CVTArchive, GridArchive
from elm.plugins import import_target
from elm.store import EvaluationRecord, RunStore
from elm.types import DescriptorSpace, Elite

__all__ = ["dash_payload", "make_synthetic_run"]

_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+)")
_STATUSES = ("ok", "invalid", "error", "timeout", "memory", "syntax_error")
_STATUS_P = (0.60, 0.24, 0.10, 0.03, 0.01, 0.02)


def _seed_sources(env_target: str) -> list[str]:
    # By its _target_ path, as a run finds its environment: elm/ imports no plugin package.
    return list(import_target(env_target)().seed_programs())


def _tweak(source: str, rng: np.random.Generator) -> str:
    """The parent's program with one numeric constant changed (a realistic small diff)."""
    numbers = list(_NUMBER.finditer(source))
    if not numbers:
        return source
    m = numbers[int(rng.integers(len(numbers)))]
    new = f"{float(m.group(1)) * float(rng.uniform(0.8, 1.2)):.6g}"
    return source[: m.start()] + new + source[m.end() :]


def make_synthetic_run(
    run_dir: str | os.PathLike,
    *,
    evaluations: int = 100_000,
    kind: str = "grid",
    dims: int = 2,
    bins: int = 12,
    cells: int = 200,
    batch: int = 100,
    seed: int = 0,
    mutators: tuple[str, ...] = ("gp", "llm"),
) -> Path:
    """Write a finished run of ``evaluations`` rows to ``run_dir/run.db``; returns ``run_dir``.

    ``kind`` is ``"grid"`` (``bins`` per dimension) or ``"cvt"`` (``cells`` centroids)
    over ``dims`` descriptors in [0, 1]. The ``llm`` mutator reports tokens. Wall
    time is simulated at 25 evaluations/s. Deterministic for a given ``seed``.
    """
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    names = tuple(f"d{i}" for i in range(dims)) if dims != 2 else ("radius_cv", "border_fraction")
    space = DescriptorSpace(names=names, lower=(0.0,) * dims, upper=(1.0,) * dims, bins=(bins,) * dims)
    if kind == "grid":
        archive: Any = GridArchive(space=space)
    elif kind == "cvt":
        archive = CVTArchive(space=space, cells=cells, samples=max(20 * cells, 5000), seed=seed)
    else:
        raise ValueError(f"kind must be 'grid' or 'cvt', got {kind!r}")
    config = {
        "env": {"_target_": "environments.circle_packing.CirclePacking", "n": 26},
        "mutator": {"_target_": "benchmarks.synthetic", "names": list(mutators)},
        "qd": {"kind": kind, "bins": [bins] * dims if kind == "grid" else None, "cells": cells,
               "qd_offset": 0.0, "out_of_bounds": "clip", "selection": "uniform"},
        "sandbox": {"_target_": "sandbox.ProcessSandbox"},
        "budget": {"evaluations": evaluations, "wall_seconds": None, "tokens": None},
        "loop": {"batch_size": batch},
        "seed": seed,
        "synthetic": True,
    }
    store = RunStore.create(run_dir, meta={
        "config": config, "seed": seed, "versions": {"python": sys.version.split()[0]},
        "environment": "circle_packing", "descriptor_space": space.to_dict(), "sandbox_backend": "process",
        "archive": archive.to_dict(),
    })
    t0 = time.time() - evaluations / 25.0
    try:
        store.begin_session()
        seeds = _seed_sources(config["env"]["_target_"])
        by_id: dict[int, tuple[str, float, tuple[float, ...], int]] = {}  # ok programs
        elites: list[Elite] = []
        tokens = 0
        next_id = 0
        while next_id < evaluations:
            n = min(batch if next_id else len(seeds), evaluations - next_id)  # seeds first, alone
            entries, records = [], []
            for k in range(n):
                i = next_id + k
                wall = i / 25.0
                if i < len(seeds):
                    parents: tuple[int, ...] = ()
                    source, fit0, desc0, gen = seeds[i], 1.9 + 0.15 * i, tuple(rng.uniform(0.2, 0.8, dims)), 0
                    mutator, status = "seed", "ok"
                else:
                    parent = elites[int(rng.integers(len(elites)))]
                    parents = (parent.id,)
                    psrc, fit0, desc0, pgen = by_id[parent.id]
                    source, gen = _tweak(psrc, rng), pgen + 1
                    mutator = mutators[int(rng.integers(len(mutators)))]
                    status = str(rng.choice(_STATUSES, p=_STATUS_P))
                tin = int(rng.integers(800, 1600)) if mutator == "llm" else 0
                tout = int(rng.integers(100, 400)) if mutator == "llm" else 0
                tokens += tin + tout
                fitness = desc = None
                if status == "ok":
                    fitness = float(fit0 + rng.normal(0.0, 0.03) + (0.0 if gen == 0 else 0.002))
                    desc = tuple(float(v) for v in np.clip(np.asarray(desc0) + rng.normal(0, 0.06, dims), -0.02, 1.02))
                    entries.append((k, Elite(id=i, cell=-1, source=source, fitness=fitness, descriptor=desc,
                                             parent_ids=parents, mutator=mutator, generation=gen)))
                records.append(dict(
                    id=i, parent_ids=parents, mutator=mutator, generation=gen, source=source, status=status,
                    fitness=fitness, descriptor=desc, mutation_status="ok",
                    error=None if status == "ok" else f"{status}: synthetic failure",
                    info={"mutation": {"edits": ["const"]}} if parents else {},
                    tokens_in=tin, tokens_out=tout, model_s=0.002 if mutator != "llm" else 1.5,
                    run_s=float(rng.uniform(0.01, 0.2)), score_s=0.003, eval_s=float(rng.uniform(0.02, 0.3)),
                    worker="bench:1", created_at=t0 + wall,
                ))
            outcomes = archive.add([e for _, e in entries]) if entries else []
            for (k, e), out in zip(entries, outcomes):
                records[k].update(cell=out.cell, archive_status=str(out.status))
                by_id[e.id] = (e.source, e.fitness, e.descriptor, e.generation)
            elites = archive.elites()
            next_id += n
            stats = archive.stats()
            store.record([EvaluationRecord(**r) for r in records], metrics=dict(
                evaluations=next_id, wall_s=next_id / 25.0, num_elites=stats.num_elites,
                coverage=stats.coverage, qd_score=stats.qd_score, norm_qd_score=stats.norm_qd_score,
                max_fitness=stats.max_fitness, mean_fitness=stats.mean_fitness, tokens=tokens))
            # Keep only what elites can still need as parents (memory stays flat).
            live = {e.id for e in elites}
            by_id = {i: v for i, v in by_id.items() if i in live}
        store.end_session("evaluation budget")
    finally:
        store.close()
    return run_dir


def dash_payload(dependencies: list[dict], output: str, values: dict[str, Any],
                 changed: tuple[str, ...] = ()) -> dict:
    """The body of the ``POST /_dash-update-component`` a browser sends for the callback writing ``output``.

    ``dependencies`` is what ``GET /_dash-dependencies`` returns; ``output`` one of the
    callback's outputs (``"archive-graph.figure"``); ``values`` maps ``"id.property"`` to
    the value the page holds (missing ones are None); ``changed`` names the inputs that fired.
    """
    for dep in dependencies:
        outs = dep["output"].strip(".").split("...")
        if output in outs:
            break
    else:
        raise KeyError(f"no callback writes {output!r}")

    def spec(prop: str) -> dict:
        ident, name = prop.rsplit(".", 1)
        return {"id": ident, "property": name}

    def filled(items: list[dict]) -> list[dict]:
        return [{**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in items]

    return {"output": dep["output"],
            "outputs": [spec(o) for o in outs] if len(outs) > 1 else spec(outs[0]),
            "inputs": filled(dep["inputs"]), "state": filled(dep.get("state", [])),
            "changedPropIds": list(changed) or [f"{i['id']}.{i['property']}" for i in dep["inputs"][:1]]}
