"""A tiny environment for the sandbox tests: programs define ``main()`` returning a number.

fitness = the number (times ``scale``), descriptor = (number mod 1,). ``score``
rejects anything that is not a finite number, so ``main`` returning NaN is
``invalid``. ``fail_build=True`` makes the constructor raise (to test the clear
error at sandbox construction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from elm.environment import Environment, InvalidProgram, load_entry_point, to_jsonable
from elm.types import DescriptorSpace, Evaluation


class ToyEnv(Environment):
    """Return a large number from main()."""

    name = "toy"
    entry_point = "main"
    preload = ("numpy",)

    def __init__(self, scale: float = 1.0, fail_build: bool = False) -> None:
        if fail_build:
            raise RuntimeError("ToyEnv was asked to fail (fail_build=True)")
        self.scale = float(scale)

    @property
    def descriptor_space(self) -> DescriptorSpace:
        return DescriptorSpace(names=("frac",), lower=(0.0,), upper=(1.0,), bins=(10,))

    def seed_programs(self) -> Sequence[str]:
        return ["def main():\n    return 1.5\n"]

    def execute(self, source: str) -> Any:
        fn = load_entry_point(source, self.entry_point)
        return to_jsonable(fn())

    def score(self, output: Any) -> Evaluation:
        if isinstance(output, bool) or not isinstance(output, (int, float, str)):
            raise InvalidProgram(f"main() must return a number, got {type(output).__name__}")
        try:
            x = float(output)
        except ValueError:
            raise InvalidProgram(f"main() must return a number, got {output!r}") from None
        frac = x % 1.0 if math.isfinite(x) else x
        return Evaluation(fitness=x * self.scale, descriptor=(frac,), info={"value": output})
