"""A user environment with bugs on purpose, for tests/test_custom_env.py.

Each program returns a tag; ``score`` misbehaves according to it, one way per
mistake a user's fitness function can make. ``fail_init=True`` makes the
constructor raise; ``fault`` breaks the environment's start-up surface
(``descriptor_space``, ``seed_programs``) one way per name in ``START_FAULTS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elm.environment import Environment, load_entry_point
from elm.types import DescriptorSpace, Evaluation

START_FAULTS = ("descriptor_space_raises", "seeds_raise", "seeds_not_a_list", "seed_not_str", "no_seeds")
TAGS = ("ok", "score_raises", "short_descriptor", "nan_fitness", "inf_descriptor", "out_of_bounds", "not_evaluation")


class FaultyEnv(Environment):
    """Return a tag from main(); score() makes the mistake the tag names."""

    name = "faulty"
    entry_point = "main"

    def __init__(self, *, tags: Sequence[str] = TAGS, fail_init: bool = False, fault: str | None = None) -> None:
        if fail_init:
            raise RuntimeError("FaultyEnv could not load its data (fail_init=True)")
        self.tags = list(tags)
        self.fault = fault

    @property
    def descriptor_space(self) -> DescriptorSpace:
        if self.fault == "descriptor_space_raises":
            return self.bins_per_dim  # a typo in a user's property: AttributeError
        return DescriptorSpace(names=("a", "b"), lower=(0.0, 0.0), upper=(1.0, 1.0), bins=(4, 4))

    def seed_programs(self) -> Sequence[str]:
        if self.fault == "seeds_raise":
            raise FileNotFoundError("seeds/ directory missing")
        if self.fault == "seeds_not_a_list":
            return "def main():\n    return 'ok'\n"
        if self.fault == "seed_not_str":
            return ["def main():\n    return 'ok'\n", b"def main():\n    return 'ok'\n"]
        if self.fault == "no_seeds":
            return []
        return [f"def main():\n    return {tag!r}\n" for tag in self.tags]

    def execute(self, source: str) -> Any:
        return load_entry_point(source, self.entry_point)()

    def score(self, tag: Any) -> Any:
        if tag == "score_raises":
            return {"a": 1}["missing key"]  # a bug in the fitness function: KeyError
        if tag == "short_descriptor":
            return Evaluation(fitness=1.0, descriptor=(0.5,))
        if tag == "nan_fitness":
            return Evaluation(fitness=float("nan"), descriptor=(0.5, 0.5))
        if tag == "inf_descriptor":
            return Evaluation(fitness=1.0, descriptor=(0.5, float("inf")))
        if tag == "out_of_bounds":
            return Evaluation(fitness=2.0, descriptor=(1.5, -0.25))
        if tag == "not_evaluation":
            return 3.0
        return Evaluation(fitness=1.0, descriptor=(0.25, 0.25))
