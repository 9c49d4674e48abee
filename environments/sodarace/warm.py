"""Compiles the Sodarace simulation kernel on import: for the sandbox's fork server only.

:class:`~environments.sodarace.Sodarace` lists this module in its ``preload``,
so the fork server imports it once, before it forks the processes that score
walkers; they inherit the compiled code instead of each compiling it (1-3 s
of CPU) on its first walker. Nothing else should import it: importing
``environments.sodarace`` itself stays free of side effects.
"""

from environments.sodarace.kernel import warm_up

warm_up()
