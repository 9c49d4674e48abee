"""Variation operators: each module defines one :class:`elm.Mutator` subclass."""

from mutators.gp import GPMutator

__all__ = ["GPMutator"]
