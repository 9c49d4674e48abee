"""Variation operators (each an :class:`elm.Mutator`) and their model backends.

- :class:`GPMutator`: random AST edits, the non-language-model baseline.
- :class:`GPCrossoverMutator`: one elite with a function or assignment of another.
- :class:`DiffMutator`, :class:`FIMMutator`, :class:`RewriteMutator`,
  :class:`CrossoverMutator`: language-model operators (diff models, fill-in-the-
  middle models, prompt mutation, LMX crossover) over a backend from
  :mod:`mutators.backends` (``hf``, ``vllm``, ``openai``).
- :class:`MixtureMutator`: several mutators with weights in one run.

The language-model operators import torch/transformers only when a backend
is built, so ``import mutators`` stays light.
"""

from mutators.gp import GPMutator
from mutators.gp_crossover import GPCrossoverMutator
from mutators.lm import CrossoverMutator, DiffMutator, FIMMutator, RewriteMutator
from mutators.mixture import MixtureMutator

__all__ = [
    "CrossoverMutator",
    "DiffMutator",
    "FIMMutator",
    "GPCrossoverMutator",
    "GPMutator",
    "MixtureMutator",
    "RewriteMutator",
]
