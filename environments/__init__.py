"""Fitness domains: each module defines one :class:`elm.Environment` subclass.

* :class:`CirclePacking` — pack n circles in the unit square (AlphaEvolve's benchmark);
* :class:`Sodarace` — build mass-spring walkers that travel far (ELM's domain); programs use
  :class:`Walker` to build them;
* :class:`ImageEvolution` — draw a 32 x 32 picture close to a shipped target;
* :class:`BinPacking` — evolve the priority heuristic of an online bin packer (FunSearch).

Importing this package has no side effects beyond defining these names, and imports each
environment's module only when its name is first used: a run of circle packing (and each of its
sandboxes) does not pay for Sodarace's simulator and numba (~0.5 s of CPU and ~60 MB per process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BinPacking", "CirclePacking", "ImageEvolution", "Sodarace", "Walker"]

_MODULE_OF = {
    "BinPacking": "environments.bin_packing",
    "CirclePacking": "environments.circle_packing",
    "ImageEvolution": "environments.image_evolution",
    "Sodarace": "environments.sodarace",
    "Walker": "environments.sodarace",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from environments.bin_packing import BinPacking
    from environments.circle_packing import CirclePacking
    from environments.image_evolution import ImageEvolution
    from environments.sodarace import Sodarace, Walker


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'environments' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
