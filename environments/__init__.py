"""Fitness domains: each module defines one :class:`elm.Environment` subclass.

* :class:`CirclePacking` — pack n circles in the unit square (AlphaEvolve's benchmark);
* :class:`Sodarace` — build mass-spring walkers that travel far (ELM's domain); programs use
  :class:`Walker` to build them;
* :class:`ImageEvolution` — draw a 32 x 32 picture close to a shipped target;
* :class:`BinPacking` — evolve the priority heuristic of an online bin packer (FunSearch).

Importing this package has no side effects beyond defining these classes.
"""

from environments.bin_packing import BinPacking
from environments.circle_packing import CirclePacking
from environments.image_evolution import ImageEvolution
from environments.sodarace import Sodarace, Walker

__all__ = ["BinPacking", "CirclePacking", "ImageEvolution", "Sodarace", "Walker"]
