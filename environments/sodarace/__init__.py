"""Sodarace: programs build 2-D mass-spring walkers that race along the ground (ELM's domain).

Programs import the builder with ``from environments.sodarace import Walker``
and define ``make_walker()``. :class:`Sodarace` is the environment;
:mod:`~environments.sodarace.walker` holds the builder and the validity rules,
:mod:`~environments.sodarace.physics` the simulation,
:mod:`~environments.sodarace.seeds` the six seed programs. Importing this
package only defines names: no simulation, file access or argument parsing.
"""

from environments.sodarace.env import Sodarace
from environments.sodarace.walker import Walker

__all__ = ["Sodarace", "Walker"]
