"""Mixtures: several mutators with weights in one run (e.g. a language model plus the GP baseline)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from elm.mutator import Mutator, build_mutator
from elm.types import Parent, Proposal, TaskContext

__all__ = ["MixtureMutator"]


class MixtureMutator(Mutator):
    """Each child of a batch is written by one component drawn by weight.

    Args:
        components: ``{name: {weight: w, _target_: "pkg.Class", **arguments}}``.
            ``name`` becomes the component's ``Proposal.mutator`` (so the run
            store's per-mutator statistics separate them) unless the
            arguments set ``name`` themselves. Weights are finite and > 0;
            they are normalised. A component with weight 0 is left out (so a
            command line can switch one off: ``mutator.components.gp.weight=0``).

    A batch is split by a seeded draw per child; each component then gets one
    call with all of its children (language models batch them) and its own
    seed derived from the batch seed, so a batch is reproducible.
    ``parents_per_child`` is the largest of the components' (a component
    needing fewer uses the first parents of each group). Children of a
    component that does not time itself get an equal share of *its own*
    call's time, not of the whole batch's.
    """

    name: ClassVar[str] = "mixture"

    def __init__(self, *, components: Mapping[str, Mapping[str, Any]], name: str | None = None) -> None:
        if not isinstance(components, Mapping) or not components:
            raise ValueError("components must be a non-empty mapping {name: {weight: w, _target_: ..., ...}}")
        self.components: list[Mutator] = []
        weights = []
        for key, spec in components.items():
            if not isinstance(spec, Mapping) or "_target_" not in spec:
                raise ValueError(f"component {key!r} needs a mapping with '_target_' and 'weight', got {spec!r}")
            weight = spec.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"component {key!r}: weight must be a finite number >= 0, got {weight!r}")
            if weight == 0:
                continue
            cfg = {k: v for k, v in spec.items() if k != "weight"}
            if cfg.get("name") is None:
                cfg["name"] = str(key)
            self.components.append(build_mutator(cfg, what=f"mixture component {key!r}"))
            weights.append(float(weight))
        if not self.components:
            raise ValueError("every component has weight 0; give at least one a weight > 0")
        self.weights = np.array(weights) / sum(weights)
        self.parents_per_child = max(c.parents_per_child for c in self.components)
        self.checks_syntax = all(c.checks_syntax for c in self.components)
        if name is not None:
            self.name = name

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name}={w:.3g}" for c, w in zip(self.components, self.weights))
        return f"MixtureMutator({parts})"

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int) -> list[Proposal]:
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(self.components), size=len(parents), p=self.weights)
        out: list[Proposal | None] = [None] * len(parents)
        for c, component in enumerate(self.components):
            index = np.flatnonzero(picks == c)
            if index.size == 0:
                continue
            k = component.parents_per_child
            groups = [list(parents[i])[:k] for i in index]
            sub_seed = int(np.random.SeedSequence([seed, c]).generate_state(1)[0] >> 1)
            start = time.perf_counter()
            proposals = list(component.mutate(parents=groups, task=task, seed=sub_seed))
            share = (time.perf_counter() - start) / len(groups)
            if len(proposals) != len(groups):
                raise RuntimeError(f"component {component.name!r} returned {len(proposals)} children for "
                                   f"{len(groups)} parent groups")
            for i, p in zip(index, proposals):
                out[i] = p if p.model_seconds else replace(p, model_seconds=share)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for component in self.components:
            component.close()
