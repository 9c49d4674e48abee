"""The walker API of the ELM paper and OpenELM, for programs written against it.

ELM (Lehman et al. 2022, p. 16) and OpenELM's Sodarace give programs a
``walker_creator`` whose ``add_joint`` / ``add_muscle`` calls build a walker
and whose ``get_walker()`` is what ``make_walker()`` returns. Such a program
runs here unchanged but for its import line::

    from environments.sodarace.openelm import walker_creator   # OpenELM: ...sodaracer.walker
    import math

    def make_walker():
        wc = walker_creator()
        a = wc.add_joint(0, 0)             # units of 0.22 m, y up; returns the joint's handle
        b = wc.add_joint(4, 0)
        c = wc.add_joint(2, 3)
        wc.add_muscle(a, c)                # amplitude 0 and phase 0: a fixed-length connection (bone)
        wc.add_muscle(b, c)
        wc.add_muscle(a, b, 1.0, 0.25)     # a muscle: amplitude, phase (cycles)
        return wc.get_walker()

How OpenELM's calls map onto this environment's walker (what its simulator
does is the reference, and is said where it differs):

* ``add_joint(x, y)`` returns the tuple ``(0.22 x, -0.22 y)`` as OpenELM
  does (its ``SCALE``; OpenELM's simulator flips y back, so y points up).
  A joint is a point at ``(0.22 x, 0.22 y)`` metres.
* ``add_muscle(j0, j1, amplitude=0.0, phase=0.0)`` takes two handles and
  resolves each to the first joint at that place (OpenELM's
  ``joints.index``), so a second joint at the same place is never connected.
  With amplitude and phase both 0 the connection is a bone (OpenELM's type
  ``"distance"``). Otherwise IESoR's conversion ``s = (amplitude + 1) / 2``
  decides: ``s < 0.2`` is a bone (IESoR's amplitude cutoff), else a muscle
  swinging by ``0.5 * min(s, 1)`` of its rest length (IESoR: ``0.3 * s``
  world units), so amplitude 1 and above is the largest swing. The muscle
  length follows ``cos(theta + 2 pi phase)`` as in OpenELM (here: phase +
  0.25 in :class:`~environments.sodarace.Walker`'s sine), at 2 Hz.
* ``get_walker()`` returns a :class:`~environments.sodarace.Walker`.
  Connections of a joint to itself are dropped (OpenELM's simulator skips
  them) and so are joints no connection touches (there they are loose balls
  that fall beside the walker). Everything else follows the environment's
  rules (:data:`~environments.sodarace.walker.RULES`), whose limits admit the
  paper's seed families; a walker that breaks one is ``invalid`` naming it.

:func:`query_cppn` is OpenELM's grid helper (``walker`` exports it too).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from elm.environment import InvalidProgram
from environments.sodarace.walker import RULES, Walker

__all__ = ["walker_creator", "query_cppn", "SCALE", "BONE_CUTOFF"]

SCALE = 0.22  # metres per OpenELM unit (OpenELM's walker_creator.SCALE)
BONE_CUTOFF = 0.2  # IESoR: a connection with (amplitude + 1) / 2 below this is a bone
#: OpenELM's cos(theta + 2 pi phase) is sin(theta + 2 pi (phase + 0.25))
PHASE_SHIFT = 0.25
#: calls beyond these stop a runaway loop early (the rules on the finished walker are lower)
MAX_JOINT_CALLS = 4 * RULES.max_joints
MAX_MUSCLE_CALLS = 2 * (RULES.max_bones + RULES.max_muscles)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise InvalidProgram(f"{where} must be a number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidProgram(f"{where} must be a finite number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidProgram(f"{where} must be a finite number, got {number!r}")
    return number


class walker_creator:
    """Builds a walker with OpenELM's calls; ``get_walker()`` gives the environment's :class:`Walker`.

    ``joints``: the handles so far, ``(0.22 x, -0.22 y)`` per ``add_joint``.
    ``muscles``: ``[i0, i1, {"type", "amplitude", "phase"}]`` per ``add_muscle``
    (``type`` is ``"distance"`` for amplitude 0 and phase 0, else ``"muscle"``).
    """

    def __init__(self) -> None:
        self.joints: list[tuple[float, float]] = []
        self.muscles: list[list] = []

    def add_joint(self, x: float, y: float) -> tuple[float, float]:
        """Add a joint at ``(x, y)`` OpenELM units (0.22 m each, y up); returns its handle."""
        if len(self.joints) >= MAX_JOINT_CALLS:
            raise InvalidProgram(f"too many add_joint calls: a walker has at most {RULES.max_joints} joints")
        n = len(self.joints)
        joint = (_finite(x, f"joint {n} x") * SCALE, -_finite(y, f"joint {n} y") * SCALE)
        self.joints.append(joint)
        return joint

    def _find(self, handle: Any, which: str) -> int:
        try:
            return self.joints.index(handle)
        except (ValueError, TypeError):
            raise InvalidProgram(f"add_muscle: {which} {handle!r:.60} is not a joint returned by add_joint") from None

    def add_muscle(self, j0: Any, j1: Any, amplitude: float = 0.0, phase: float = 0.0) -> list:
        """Connect the joints with handles ``j0`` and ``j1``: a bone, or a muscle with ``amplitude`` and ``phase``."""
        if len(self.muscles) >= MAX_MUSCLE_CALLS:
            raise InvalidProgram(
                f"too many add_muscle calls: a walker has at most {RULES.max_bones} bones and "
                f"{RULES.max_muscles} muscles"
            )
        k = len(self.muscles)
        amp = _finite(amplitude, f"muscle {k} amplitude")
        ph = _finite(phase, f"muscle {k} phase")
        kind = "distance" if amp == 0.0 and ph == 0.0 else "muscle"
        record = [self._find(j0, "j0"), self._find(j1, "j1"), {"type": kind, "amplitude": amp, "phase": ph}]
        self.muscles.append(record)
        return record

    def get_walker(self) -> Walker:
        """The walker as this environment's :class:`Walker` (see the module docstring for the mapping)."""
        links = [m for m in self.muscles if m[0] != m[1]]
        used = sorted({i for m in links for i in m[:2]})
        index = {old: new for new, old in enumerate(used)}
        w = Walker()
        for old in used:
            x, y = self.joints[old]
            w.add_joint(x, -y)
        for i0, i1, props in links:
            s = (props["amplitude"] + 1.0) / 2.0
            if props["type"] == "distance" or s < BONE_CUTOFF:
                w.add_bone(index[i0], index[i1])
            else:
                w.add_muscle(index[i0], index[i1], amplitude=RULES.max_amplitude * min(s, 1.0),
                             phase=math.fmod(props["phase"], 1.0) + PHASE_SHIFT)
        return w


def query_cppn(
    wc: walker_creator,
    xgrid: int,
    ygrid: int,
    scale: float,
    connect_func: Callable[[int, int, int, int], Any],
    amp_func: Callable[[int, int, int, int], float],
    phase_func: Callable[[int, int, int, int], float],
) -> dict[tuple[int, int], tuple[float, float]]:
    """OpenELM's grid helper: joints at ``(x * scale, y * scale)``, connected where ``connect_func`` says.

    Joints for ``x in range(xgrid)``, ``y in range(ygrid)``; then for every
    ``x1 <= x2`` and ``y1 <= y2`` (grid indices) for which ``connect_func(x1, y1,
    x2, y2)`` is true, ``add_muscle`` with ``amp_func(...)`` and
    ``phase_func(...)``. As in OpenELM, the pair is skipped when ``x1 == y1``
    and ``x2 == y2`` (not when the two points coincide), so some points are
    offered a connection to themselves, which ``get_walker`` drops. Returns
    ``{(x, y): joint handle}``.
    """
    grid = {(x, y): wc.add_joint(x * scale, y * scale) for x in range(xgrid) for y in range(ygrid)}
    for x1 in range(xgrid):
        for y1 in range(ygrid):
            for x2 in range(x1, xgrid):
                for y2 in range(y1, ygrid):
                    if x1 == y1 and x2 == y2:
                        continue
                    if connect_func(x1, y1, x2, y2):
                        wc.add_muscle(grid[x1, y1], grid[x2, y2], amp_func(x1, y1, x2, y2),
                                      phase_func(x1, y1, x2, y2))
    return grid
