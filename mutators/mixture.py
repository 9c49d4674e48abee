"""Mixtures: several mutators with weights in one run (e.g. a language model plus the GP baseline)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from elm.mutator import Lane, Mutator, build_mutator, merge_variant
from elm.types import Parent, Proposal, TaskContext

__all__ = ["MixtureMutator"]


def _lanes(components: Mapping[str, Mapping[str, Any]]) -> list[Lane]:
    """The components as lanes (weight 0 left out), checked; ValueError names the component."""
    if not isinstance(components, Mapping) or not components:
        raise ValueError("components must be a non-empty mapping {name: {weight: w, _target_: ..., ...}}")
    lanes = []
    for key, spec in components.items():
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise ValueError(f"component {key!r} needs a mapping with '_target_' and 'weight', got {spec!r}")
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"component {key!r}: weight must be a finite number >= 0, got {weight!r}")
        variants = spec.get("variants") or {}
        if not isinstance(variants, Mapping) or any(not isinstance(v, Mapping) for v in variants.values()):
            raise ValueError(f"component {key!r}: variants must map names to overrides of its arguments, "
                             f"e.g. {{cool: {{sampling: {{temperature: 0.3}}}}}}; got {variants!r}")
        if weight == 0:
            continue
        node = {k: v for k, v in spec.items() if k not in ("weight", "variants")}
        if node.get("name") is None:
            node["name"] = str(key)
        lanes.append(Lane(name=str(node["name"]), weight=float(weight), node=node,
                          variants={str(k): dict(v) for k, v in variants.items()}))
    if not lanes:
        raise ValueError("every component has weight 0; give at least one a weight > 0")
    return lanes


class MixtureMutator(Mutator):
    """Each child of a batch is written by one component drawn by weight.

    Args:
        components: ``{name: {weight: w, _target_: "pkg.Class", **arguments}}``.
            ``name`` becomes the component's ``Proposal.mutator`` (so the run
            store's per-mutator statistics separate them) unless the
            arguments set ``name`` themselves. Weights are finite and > 0;
            they are normalised. A component with weight 0 is left out (so a
            command line can switch one off: ``mutator.components.gp.weight=0``).
            A component may list ``variants: {name: {overrides}}`` (e.g. two
            temperatures): each is an operator of its own that shares the
            component's weight equally (its children record ``meta.variant``).

    In a run the engine normally runs each component as its own *lane* (its own
    mutator actor, see :meth:`lanes` and docs/search.md); this class mixes them
    inside one actor when lanes are off (``search.lanes=false``). A batch is
    split by a seeded draw per child; each component then gets one
    call with all of its children (language models batch them) and its own
    seed derived from the batch seed, so a batch is reproducible.
    ``parents_per_child`` is the largest of the components' (a component
    needing fewer uses the first parents of each group). Children of a
    component that does not time itself get an equal share of *its own*
    call's time, not of the whole batch's.
    """

    name: ClassVar[str] = "mixture"

    def __init__(self, *, components: Mapping[str, Mapping[str, Any]], name: str | None = None) -> None:
        self.components: list[Mutator] = []
        self._variant: list[str | None] = []
        weights = []
        for lane in _lanes(components):
            for variant, overrides in (lane.variants.items() or [(None, {})]):
                node = merge_variant(lane.node, overrides)
                what = f"mixture component {lane.name!r}" + (f" variant {variant!r}" if variant else "")
                self.components.append(build_mutator(node, what=what))
                self._variant.append(variant)
                weights.append(lane.weight / max(len(lane.variants), 1))
        self.weights = np.array(weights) / sum(weights)
        self.parents_per_child = max(c.parents_per_child for c in self.components)
        self.inspirations = max(c.inspirations for c in self.components)
        self.checks_syntax = all(c.checks_syntax for c in self.components)
        if name is not None:
            self.name = name

    @classmethod
    def lanes(cls, node: Mapping[str, Any]) -> list[Lane]:
        """One lane per component with weight > 0 (its variants ride along in its lane)."""
        return _lanes(node.get("components") or {})

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name}={w:.3g}" for c, w in zip(self.components, self.weights))
        return f"MixtureMutator({parts})"

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int,
               inspirations: Sequence[Sequence[Parent]] | None = None) -> list[Proposal]:
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
            extra = {}
            if component.inspirations > 0:  # the components that show other elites get theirs
                extra["inspirations"] = [list(inspirations[i])[:component.inspirations] if inspirations else []
                                         for i in index]
            proposals = list(component.mutate(parents=groups, task=task, seed=sub_seed, **extra))
            share = (time.perf_counter() - start) / len(groups)
            if len(proposals) != len(groups):
                raise RuntimeError(f"component {component.name!r} returned {len(proposals)} children for "
                                   f"{len(groups)} parent groups")
            variant = self._variant[c]
            for i, p in zip(index, proposals):
                if not p.model_seconds:
                    p = replace(p, model_seconds=share)
                out[i] = p if variant is None else replace(p, meta={**dict(p.meta), "variant": variant})
        return out  # type: ignore[return-value]

    def model_version(self) -> str | None:
        """The version of the one component with a model (None when none has one, or several do:
        with lanes off, ``finetune.operator`` cannot pick one of them)."""
        versions = [v for v in (c.model_version() for c in self.components) if v is not None]
        return versions[0] if len(versions) == 1 else None

    def load_adapter(self, path: str) -> str:
        """Into the one component with a model (see :meth:`model_version`)."""
        models = [c for c in self.components if c.model_version() is not None]
        if len({id(getattr(c, "backend", c)) for c in models}) != 1:
            raise ValueError(f"this mixture has {len(models)} components with a model; fine-tuning in a run "
                             "needs lanes (search.lanes=true) and finetune.operator naming one of them")
        return [c.load_adapter(path) for c in models][0]

    def close(self) -> None:
        for component in self.components:
            component.close()
