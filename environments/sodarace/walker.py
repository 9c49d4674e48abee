"""The walker-building API of Sodarace and the rules a walker must satisfy.

A program builds a :class:`Walker` from joints (point masses), bones
(rigid bars) and muscles (stiff springs whose rest length
oscillates), and returns it from ``make_walker()``::

    from environments.sodarace import Walker

    def make_walker():
        w = Walker()
        a = w.add_joint(0.0, 0.0)                    # metres, y up
        b = w.add_joint(1.0, 0.0)
        c = w.add_joint(0.5, 0.8)
        w.add_bone(a, c)
        w.add_bone(b, c)
        w.add_muscle(a, b, amplitude=0.3, phase=0.25)
        return w

The builder checks each call (indices exist, numbers finite, amplitude in
range) and raises :class:`~elm.environment.InvalidProgram` with the reason.
The whole-walker rules (:data:`RULES`) are checked again by
:func:`check_walker` in the scoring process, on the walker's JSON form,
because the program's own process cannot be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from elm.environment import InvalidProgram

__all__ = ["Walker", "WalkerRules", "RULES", "WalkerArrays", "check_walker", "walker_mass"]


@dataclass(frozen=True)
class WalkerRules:
    """Limits every walker must respect (units: metres, kilograms).

    The physics (exact constraints, unconditionally stable) needs none of
    them; they bound the cost of an evaluation and keep runaway programs out,
    and they admit the ELM paper's seed families written with
    :mod:`~environments.sodarace.openelm` (its runner: 40 joints, 410 muscles,
    35 on one joint, 666 kg; its galloper: joints 6.6 mm apart). Joints closer
    than ``min_joint_distance`` are a degenerate body (a ring that closes onto
    its first joint: 3.5 mm).
    """

    min_joints: int = 2
    max_joints: int = 64
    max_bones: int = 512
    max_muscles: int = 512
    max_connections_per_joint: int = 48
    max_amplitude: float = 0.5  # muscle length swings by at most +-50 % of its rest length
    min_joint_distance: float = 0.005  # any two joints at least 5 mm apart as built
    max_size: float = 4.0  # bounding box at most 4 m wide and 4 m high
    max_mass: float = 1000.0  # kg, see walker_mass()
    max_coordinate: float = 1000.0  # |x|, |y| as built (the walker is moved to the origin anyway)
    joint_mass: float = 0.1  # kg per joint
    density: float = 1.0  # kg per metre of bone or muscle


RULES = WalkerRules()


def _number(value: Any, where: str) -> float:
    """``value`` as a finite float, or InvalidProgram naming ``where`` (bools, strings, NaN rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidProgram(f"{where} must be a finite number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidProgram(f"{where} = {value!r} is too large for a float") from None
    if not math.isfinite(number):
        raise InvalidProgram(f"{where} must be a finite number, got {number!r}")
    return number


def _index(value: Any, where: str) -> int:
    """``value`` as a Python int (bools and floats rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidProgram(f"{where} must be a joint index (int), got {value!r} ({type(value).__name__})")
    return int(value)


class Walker:
    """A walker under construction: joints joined by bones and muscles.

    Coordinates are metres with y pointing up. Where the walker is built does
    not matter: the simulation moves it so that its lowest joint touches the
    ground and its centre of mass is at x = 0.

    * ``add_joint(x, y) -> int``: a joint (a point mass); returns its index,
      0, 1, 2, ... in order of creation.
    * ``add_bone(a, b) -> int``: a rigid bar between joints ``a`` and
      ``b`` that keeps their distance as built.
    * ``add_muscle(a, b, *, amplitude, phase) -> int``: a spring whose rest
      length oscillates as ``L0 * (1 + amplitude * sin(2 pi (f t + phase)))``
      with ``L0`` the distance as built, ``f`` = 2 Hz for every muscle,
      ``0 <= amplitude <= 0.5`` and ``phase`` in cycles (only its fractional
      part matters). Muscles with different phases make a gait.

    ``add_bone`` and ``add_muscle`` return the number of connections so far
    minus one. Each call checks its own arguments and raises
    :class:`~elm.environment.InvalidProgram` naming the problem; the rules on
    the whole walker (sizes, counts, distances) are listed in
    :class:`WalkerRules` and checked when it is scored.
    """

    __slots__ = ("_joints", "_bones", "_muscles")

    def __init__(self) -> None:
        self._joints: list[tuple[float, float]] = []
        self._bones: list[tuple[int, int]] = []
        self._muscles: list[tuple[int, int, float, float]] = []

    def __repr__(self) -> str:
        return f"Walker({len(self._joints)} joints, {len(self._bones)} bones, {len(self._muscles)} muscles)"

    @property
    def joints(self) -> tuple[tuple[float, float], ...]:
        """Joint positions ``(x, y)`` in metres, in index order."""
        return tuple(self._joints)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._bones)

    @property
    def muscles(self) -> tuple[tuple[int, int, float, float], ...]:
        """``(a, b, amplitude, phase)`` per muscle."""
        return tuple(self._muscles)

    def add_joint(self, x: float, y: float) -> int:
        """Add a joint at ``(x, y)`` metres; returns its index."""
        n = len(self._joints)
        if n >= RULES.max_joints:
            raise InvalidProgram(f"too many joints: at most {RULES.max_joints} are allowed")
        self._joints.append((_number(x, f"joint {n} x"), _number(y, f"joint {n} y")))
        return n

    def _pair(self, a: Any, b: Any, what: str) -> tuple[int, int]:
        a, b = _index(a, f"{what} joint a"), _index(b, f"{what} joint b")
        n = len(self._joints)
        for j in (a, b):
            if not 0 <= j < n:
                raise InvalidProgram(f"{what} refers to joint {j}, but only joints 0..{n - 1} exist so far")
        if a == b:
            raise InvalidProgram(f"{what} connects joint {a} to itself")
        return a, b

    def add_bone(self, a: int, b: int) -> int:
        """Join joints ``a`` and ``b`` with a bone (fixed length); returns the connection index."""
        if len(self._bones) >= RULES.max_bones:
            raise InvalidProgram(f"too many bones: at most {RULES.max_bones} are allowed")
        self._bones.append(self._pair(a, b, f"bone {len(self._bones)}"))
        return len(self._bones) + len(self._muscles) - 1

    def add_muscle(self, a: int, b: int, *, amplitude: float, phase: float) -> int:
        """Join joints ``a`` and ``b`` with a muscle; returns the connection index.

        ``amplitude`` is the fraction of the rest length by which the muscle
        lengthens and shortens (0 to 0.5); ``phase`` shifts its cycle (in
        cycles: 0.25 is a quarter period later).
        """
        what = f"muscle {len(self._muscles)}"
        if len(self._muscles) >= RULES.max_muscles:
            raise InvalidProgram(f"too many muscles: at most {RULES.max_muscles} are allowed")
        a, b = self._pair(a, b, what)
        amp = _number(amplitude, f"{what} amplitude")
        if not 0.0 <= amp <= RULES.max_amplitude:
            raise InvalidProgram(f"{what} amplitude {amp!r} is outside [0, {RULES.max_amplitude}]")
        self._muscles.append((a, b, amp, _number(phase, f"{what} phase")))
        return len(self._bones) + len(self._muscles) - 1

    def to_dict(self) -> dict[str, list]:
        """The walker as plain JSON data.

        ``{"joints": [[x, y]], "bones": [[a, b]], "muscles": [[a, b, amp, phase]]}``.
        """
        return {
            "joints": [list(j) for j in self._joints],
            "bones": [list(b) for b in self._bones],
            "muscles": [list(m) for m in self._muscles],
        }


@dataclass(frozen=True)
class WalkerArrays:
    """A checked walker as arrays: what the simulation consumes.

    ``joints`` (n, 2) float64 metres as built; ``a``, ``b`` (m,) int joint
    indices of each connection, bones first then muscles; ``amplitude`` and
    ``phase`` (m,) float64 (0 for bones); ``n_bones`` bones come first.
    """

    joints: np.ndarray
    a: np.ndarray
    b: np.ndarray
    amplitude: np.ndarray
    phase: np.ndarray
    n_bones: int

    @property
    def rest_length(self) -> np.ndarray:
        d = self.joints[self.b] - self.joints[self.a]
        return np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])


def walker_mass(w: WalkerArrays, rules: WalkerRules = RULES) -> np.ndarray:
    """Mass of each joint in kg, shape (n,): ``joint_mass`` plus half of every connection touching it.

    A connection weighs ``density`` kg per metre of rest length, so the total
    mass is ``joint_mass * n + density * sum(rest lengths)``.
    """
    half = 0.5 * rules.density * w.rest_length
    mass = np.full(len(w.joints), rules.joint_mass)
    mass += np.bincount(w.a, weights=half, minlength=len(mass))
    mass += np.bincount(w.b, weights=half, minlength=len(mass))
    return mass


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InvalidProgram(f"{where} must be a list, got {type(value).__name__}")
    return value


def check_walker(data: Any, rules: WalkerRules = RULES) -> WalkerArrays:
    """Parse a walker's JSON form (``Walker.to_dict()``) and enforce every rule.

    Raises:
        InvalidProgram: naming the first violated rule, e.g.
            ``"joints 3 and 7 are 0.012 m apart; the minimum is 0.05 m"``.
    """
    if not isinstance(data, dict):
        raise InvalidProgram(f"make_walker() output must be a walker, got {type(data).__name__}")
    for key in ("joints", "bones", "muscles"):
        if key not in data:
            raise InvalidProgram(f"walker has no {key!r} (keys: {sorted(map(str, data))})")
    joints = _list(data["joints"], "joints")
    bones = _list(data["bones"], "bones")
    muscles = _list(data["muscles"], "muscles")
    n = len(joints)
    if not rules.min_joints <= n <= rules.max_joints:
        raise InvalidProgram(f"walker has {n} joints; between {rules.min_joints} and {rules.max_joints} are allowed")
    if len(bones) > rules.max_bones:
        raise InvalidProgram(f"walker has {len(bones)} bones; at most {rules.max_bones} are allowed")
    if len(muscles) > rules.max_muscles:
        raise InvalidProgram(f"walker has {len(muscles)} muscles; at most {rules.max_muscles} are allowed")
    if not bones and not muscles:
        raise InvalidProgram("walker has no bones or muscles: its joints are not connected")

    xy = np.empty((n, 2))
    for i, joint in enumerate(joints):
        if not isinstance(joint, list) or len(joint) != 2:
            raise InvalidProgram(f"joint {i} must be an [x, y] pair, got {joint!r:.80}")
        for k in range(2):
            v = _number(joint[k], f"joint {i} {'xy'[k]}")
            if abs(v) > rules.max_coordinate:
                raise InvalidProgram(f"joint {i} {'xy'[k]} = {v!r} is beyond +-{rules.max_coordinate} m")
            xy[i, k] = v

    m = len(bones) + len(muscles)
    a = np.empty(m, dtype=np.intp)
    b = np.empty(m, dtype=np.intp)
    amp = np.zeros(m)
    phase = np.zeros(m)
    rows = [("bone", i, c, 2) for i, c in enumerate(bones)] + [("muscle", i, c, 4) for i, c in enumerate(muscles)]
    for k, (kind, i, conn, width) in enumerate(rows):
        what = f"{kind} {i}"
        if not isinstance(conn, list) or len(conn) != width:
            shape = "[a, b]" if width == 2 else "[a, b, amplitude, phase]"
            raise InvalidProgram(f"{what} must be {shape}, got {conn!r:.80}")
        a[k], b[k] = _index(conn[0], f"{what} joint a"), _index(conn[1], f"{what} joint b")
        for j in (a[k], b[k]):
            if not 0 <= j < n:
                raise InvalidProgram(f"{what} refers to joint {j}; the walker has joints 0..{n - 1}")
        if a[k] == b[k]:
            raise InvalidProgram(f"{what} connects joint {a[k]} to itself")
        if width == 4:
            amplitude = _number(conn[2], f"{what} amplitude")
            if not 0.0 <= amplitude <= rules.max_amplitude:
                raise InvalidProgram(f"{what} amplitude {amplitude!r} is outside [0, {rules.max_amplitude}]")
            amp[k] = amplitude
            phase[k] = _number(conn[3], f"{what} phase")

    degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    worst = int(np.argmax(degree))
    if degree[worst] > rules.max_connections_per_joint:
        raise InvalidProgram(
            f"joint {worst} has {int(degree[worst])} bones and muscles; at most "
            f"{rules.max_connections_per_joint} per joint are allowed"
        )
    size = xy.max(axis=0) - xy.min(axis=0)
    for k, label in ((0, "wide"), (1, "high")):
        if size[k] > rules.max_size:
            raise InvalidProgram(f"walker is {size[k]:.3g} m {label}; at most {rules.max_size} m is allowed")
    dx = xy[:, None, 0] - xy[None, :, 0]
    dy = xy[:, None, 1] - xy[None, :, 1]
    dist = np.sqrt(dx * dx + dy * dy)
    iu, ju = np.triu_indices(n, k=1)
    close = np.flatnonzero(dist[iu, ju] < rules.min_joint_distance)
    if close.size:
        i, j = int(iu[close[0]]), int(ju[close[0]])
        raise InvalidProgram(
            f"joints {i} and {j} are {dist[i, j]:.3g} m apart; the minimum is {rules.min_joint_distance} m "
            f"({close.size} pair(s) too close)"
        )
    _check_connected(n, a, b)
    walker = WalkerArrays(joints=xy, a=a, b=b, amplitude=amp, phase=phase, n_bones=len(bones))
    total = math.fsum(walker_mass(walker, rules).tolist())
    if total > rules.max_mass:
        raise InvalidProgram(f"walker weighs {total:.3g} kg; at most {rules.max_mass} kg is allowed")
    return walker


def _check_connected(n: int, a: np.ndarray, b: np.ndarray) -> None:
    """Raise InvalidProgram unless bones and muscles join all n joints into one body."""
    label = np.arange(n)
    while True:  # label propagation: at most n rounds, each vectorised
        new = label.copy()
        np.minimum.at(new, a, label[b])
        np.minimum.at(new, b, label[a])
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    loose = np.flatnonzero(label != 0)
    if loose.size:
        raise InvalidProgram(
            f"joint {int(loose[0])} is not connected to joint 0 by bones or muscles "
            f"({loose.size} joint(s) in separate pieces); a walker must be one body"
        )
