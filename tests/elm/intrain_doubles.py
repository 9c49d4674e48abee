"""Test doubles for in-run fine-tuning: a trainer (``finetune.trainer._target_``) that fails on purpose,
and an environment whose programs are one assignment, so that most of the baseline's successful
children change one line (a ``lines`` training example) and rounds come often in a short run."""

from __future__ import annotations

import math

from elm.environment import Environment, InvalidProgram, load_entry_point
from elm.types import DescriptorSpace, Evaluation
from mutators.finetune.train import LoRATrainer


class OneLineEnv(Environment):
    """main() returns x, set on one line: fitness x, descriptor x mod 1."""

    name = "one_line"
    entry_point = "main"

    @property
    def descriptor_space(self) -> DescriptorSpace:
        return DescriptorSpace(names=("frac",), lower=(0.0,), upper=(1.0,), bins=(20,))

    def seed_programs(self):
        return ["def main():\n    x = 1.5\n    return x\n"]

    def execute(self, source):
        return load_entry_point(source, self.entry_point)()

    def score(self, output) -> Evaluation:
        if isinstance(output, bool) or not isinstance(output, (int, float)) or not math.isfinite(output):
            raise InvalidProgram(f"main() must return a finite number, got {output!r}")
        return Evaluation(fitness=float(output), descriptor=(float(output) % 1.0,))


class FailingTrainer(LoRATrainer):
    """The LoRA trainer, except that the rounds in ``fail_rounds`` fail half-way (they write part of
    their adapter directory, then raise), and those in ``broken_rounds`` train but leave weights no
    actor can load."""

    def __init__(self, *, fail_rounds: tuple[int, ...] = (), broken_rounds: tuple[int, ...] = (),
                 **settings: object) -> None:
        super().__init__(**settings)
        self.fail_rounds = {int(r) for r in fail_rounds}
        self.broken_rounds = {int(r) for r in broken_rounds}

    def train(self, *, data, out, lane, init, budget):
        round_ = int(out.name.lstrip("v"))
        if round_ in self.fail_rounds:
            out.mkdir(parents=True, exist_ok=True)
            (out / "adapter_config.json").write_text("{}")
            raise RuntimeError(f"forced failure of round {out.name}")
        meta = super().train(data=data, out=out, lane=lane, init=init, budget=budget)
        if round_ in self.broken_rounds:
            (out / "adapter_model.safetensors").write_bytes(b"not weights")
        return meta
