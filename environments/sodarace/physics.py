"""Deterministic Sodarace physics: rigid bones, springy muscles, ground with friction (XPBD substeps).

Model (SI units: metres, seconds, kilograms):

* **Joints** are point masses (:func:`~environments.sodarace.walker.walker_mass`).
* **Bones** are rigid: exact distance constraints (compliance 0), solved with
  position-based dynamics in ``SUBSTEPS`` substeps per step (XPBD, Macklin et
  al. 2016 and "Small steps in physics simulation", 2019), each with
  Gauss-Seidel sweeps over bones and ground contacts until every bone is
  within ``BONE_TOLERANCE`` of its length (``BONE_SWEEPS``: at least, at
  most). A bone keeps its length to within a fraction of a percent under
  gravity, contact and muscle forces (the test suite measures the worst
  strain over whole runs).
* **Muscles** are damped springs whose rest length oscillates, as in
  Sodarace (IESoR's muscles are Box2D distance joints of 3 Hz and damping
  ratio 0.3): ``L0 * (1 + A sin(2 pi (f t' + phase)))`` with ``f =
  MUSCLE_HZ`` and ``t'`` the time since the muscles switched on; the
  amplitude ``A`` ramps up linearly over ``RAMP_S``. Each muscle springs
  towards its current length with own frequency ``MUSCLE_SPRING_HZ`` and
  damping ratio ``MUSCLE_DAMPING`` whatever the masses (XPBD compliance
  ``1 / (k h^2)`` with ``k = (2 pi MUSCLE_SPRING_HZ)^2 * reduced mass``).
  Within a substep muscles are solved before bones, so a muscle that pulls
  against a braced frame loads the frame without stretching it.
* **Ground**: after the constraints, a joint below the terrain is put back on
  it along the surface normal (inelastic contact), and Coulomb friction
  (coefficient ``FRICTION``) cancels its tangential displacement over the
  substep up to ``FRICTION`` times the normal correction: a joint pressed
  into the ground grips it unless pushed hard sideways. That is what lets
  muscles push a body along.
* **Integration**: velocities are positional change over the substep
  ``h = DT / SUBSTEPS`` (DT = 1/50 s). Why XPBD rather than stiff springs:
  an explicit spring as stiff as a bone needs a step far below 1 ms for
  stability, and an implicit spring needs a linear solve per step; exact
  constraints with substeps are unconditionally stable, keep bones rigid at
  any mass ratio and connection count, and cost a few flops per connection
  and substep. The loop (:mod:`~environments.sodarace.kernel`) is compiled
  with numba; without numba the same code runs interpreted, same numbers.

A run: the walker is placed with its lowest joint on the terrain and its
centre of mass at x = 0; it first settles for ``SETTLE_S`` seconds with its
muscles locked at their rest lengths, then its muscles work until
``duration_s``. The fitness (:func:`sustained_travel`) is the steady
progress of the centre of mass per muscle cycle (median over the cycles)
times the number of cycles.

Determinism: the same walker gives bit-identical results in every process
on a machine, the host and a gVisor sandbox alike, whatever CPU features
each reports. The kernel uses only correctly rounded operations in a fixed
order (numba without fastmath contracts no multiply-adds and reorders no
sums); the muscles' sines come from Python's ``math`` and the wave products
from elementwise numpy operations (exact whatever SIMD is used). Across
machines results can differ only through the C library's ``sin``/``cos``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from environments.sodarace import kernel
from environments.sodarace.walker import RULES, WalkerArrays, WalkerRules, walker_mass

__all__ = ["TERRAINS", "Rollout", "simulate", "sustained_travel", "DT", "MUSCLE_HZ", "SETTLE_S", "CYCLE_STEPS"]

DT = 1.0 / 50.0  # s, one step (muscle lengths are given per step, positions recorded per step)
SUBSTEPS = 10  # XPBD substeps per step
BONE_SWEEPS = (2, 32)  # Gauss-Seidel sweeps over bones and ground contacts per substep: at least, at most
BONE_TOLERANCE = 1e-3  # sweeps stop once every bone is within this fraction of its length
GRAVITY = 9.81  # m/s^2
MUSCLE_SPRING_HZ = 10.0  # own frequency of a muscle's spring
MUSCLE_DAMPING = 0.3  # damping ratio of a muscle's spring (IESoR's dampingRatio)
FRICTION = 0.8  # Coulomb coefficient between joints and the ground
AIR_DRAG = 1.0  # 1/s: velocities decay as exp(-AIR_DRAG t) when nothing else acts
MUSCLE_HZ = 2.0  # every muscle's frequency
SETTLE_S = 1.0  # muscles locked while the body settles
RAMP_S = 1.0  # muscle amplitude ramps from 0 over this long after settling
CYCLE_STEPS = 25  # steps per muscle cycle: 1 / (MUSCLE_HZ * DT)
assert abs(CYCLE_STEPS * MUSCLE_HZ * DT - 1.0) < 1e-12

#: terrain name -> (description, profile parameters); all are mirror-symmetric about x = 0,
#: where the walker starts, so moving left or right is equally hard.
TERRAINS: dict[str, str] = {
    "flat": "flat ground at height 0",
    "hills": "smooth hills 0.2 m high every 2 m, the walker starting in a trough",
    "uphill": "a valley: the ground rises by 15 cm per metre in both directions, h(x) = 0.15 |x|",
}
HILL_HEIGHT = 0.2  # m
HILL_PERIOD = 2.0  # m
UPHILL_SLOPE = 0.15
_TERRAIN_CODES = {"flat": kernel.FLAT, "hills": kernel.HILLS, "uphill": kernel.UPHILL}


def _ground(terrain: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terrain height h(x) and slope dh/dx at ``x`` (arrays of the shape of ``x``).

    ``hills``: with ``w`` the triangle wave that is 0 at even multiples of
    half a period and 1 halfway between, ``h = HILL_HEIGHT * (3 w^2 - 2 w^3)``
    (smoothstep bumps: zero slope at crests and troughs, steepest slope
    0.3 = 17 degrees).
    """
    if terrain == "hills":
        f = np.remainder(x / HILL_PERIOD, 1.0)  # position within the period, [0, 1)
        w = 1.0 - np.abs(2.0 * f - 1.0)
        dw = np.where(f < 0.5, 2.0, -2.0) / HILL_PERIOD
        return HILL_HEIGHT * w * w * (3.0 - 2.0 * w), HILL_HEIGHT * 6.0 * w * (1.0 - w) * dw
    if terrain == "uphill":
        return UPHILL_SLOPE * np.abs(x), UPHILL_SLOPE * np.sign(x)
    return np.zeros_like(x), np.zeros_like(x)


@dataclass(frozen=True)
class Rollout:
    """Result of one simulation (metres unless stated).

    ``distance``: the fitness, :func:`sustained_travel` of the centre of mass.
    ``net_displacement``: signed displacement of the cycle-averaged centre of
    mass from the first to the last muscle cycle. ``cycle_progress``: signed
    progress of the cycle-averaged centre of mass from each cycle to the next.
    ``com_start`` / ``com_end``: centre of mass x at the end of settling and at
    the end (it starts at x = 0). ``max_bone_strain``: the largest
    ``|length / rest length - 1|`` of any bone at any step. ``trajectory`` is
    None unless requested: (steps + 1, n, 2) joint positions.
    """

    distance: float
    net_displacement: float
    cycle_progress: tuple[float, ...]
    com_start: float
    com_end: float
    max_bone_strain: float
    steps: int
    trajectory: np.ndarray | None = None


def sustained_travel(com: np.ndarray, *, settle_steps: int,
                     cycle_steps: int = CYCLE_STEPS) -> tuple[float, float, np.ndarray]:
    """Fitness of a centre-of-mass trace: steady progress per muscle cycle times the number of cycles.

    ``com`` (steps + 1,): centre of mass x after each step. The ``K`` whole
    muscle cycles after settling are averaged, ``c_k`` = the mean of the
    ``cycle_steps`` samples of cycle ``k`` (so where in its oscillation the
    body happens to be at the end does not matter), and
    ``d_k = c_{k+1} - c_k`` is the progress from one cycle to the next::

        fitness = |median(d_1 .. d_{K-1})| * K

    the distance a walker covers in ``K`` cycles at its typical pace. A
    passive body that topples, slides or folds once moves in a few cycles
    only; the median ignores them, so bodies without a gait score about 0.

    Returns ``(fitness, net, d)``: ``net = c_K - c_1`` and the (K - 1,) array
    ``d``. Needs ``K >= 2`` (``ValueError`` otherwise).
    """
    active = com[settle_steps + 1:]
    cycles = len(active) // cycle_steps
    if cycles < 2:
        raise ValueError(f"need at least 2 muscle cycles after settling, got {cycles}")
    means = active[:cycles * cycle_steps].reshape(cycles, cycle_steps).mean(axis=1)
    d = np.diff(means)
    return float(abs(np.median(d)) * cycles), float(means[-1] - means[0]), d


def simulate(
    walker: WalkerArrays,
    *,
    terrain: str = "flat",
    duration_s: float = 10.0,
    rules: WalkerRules = RULES,
    record: bool = False,
) -> Rollout:
    """Simulate ``walker`` for ``duration_s`` simulated seconds (settling included).

    Args:
        walker: a walker checked by :func:`~environments.sodarace.walker.check_walker`.
        terrain: one of :data:`TERRAINS`.
        duration_s: total simulated time in seconds; the muscles work for
            ``duration_s - SETTLE_S`` seconds, at least two cycles.
        rules: supply the joint mass and density (defaults: :data:`RULES`).
        record: keep every step's joint positions in ``Rollout.trajectory``.

    Raises:
        ValueError: unknown terrain or a duration shorter than settling plus two muscle cycles.
        FloatingPointError: the state stopped being finite (reported rather than returning garbage).
    """
    if terrain not in TERRAINS:
        raise ValueError(f"unknown terrain {terrain!r}; choose one of {sorted(TERRAINS)}")
    shortest = SETTLE_S + 2.0 / MUSCLE_HZ
    if not (math.isfinite(duration_s) and duration_s >= shortest):
        raise ValueError(f"duration_s must be at least {shortest:g} s (settling plus two muscle cycles), "
                         f"got {duration_s!r}")
    n = len(walker.joints)
    nb = walker.n_bones
    rest = walker.rest_length
    mass = walker_mass(walker, rules)

    steps = int(round(duration_s / DT))
    settle = int(round(SETTLE_S / DT))
    t = (np.arange(steps + 1) - settle) * DT  # time since the muscles switched on
    ramp = np.clip(t / RAMP_S, 0.0, 1.0)[:, None]
    # sin(2 pi (f t + phase)) = sin(2 pi f t) cos(2 pi phase) + cos(2 pi f t) sin(2 pi phase)
    clock = [2.0 * math.pi * MUSCLE_HZ * v for v in t.tolist()]
    turns = [2.0 * math.pi * math.fmod(p, 1.0) for p in walker.phase.tolist()]
    wave = (np.array([math.sin(v) for v in clock])[:, None] * np.array([math.cos(v) for v in turns])[None, :]
            + np.array([math.cos(v) for v in clock])[:, None] * np.array([math.sin(v) for v in turns])[None, :])
    target = np.ascontiguousarray(rest * (1.0 + ramp * walker.amplitude[None, :] * wave))  # (steps + 1, m)

    # Centre of mass to x = 0, lowest joint on the ground.
    pos = np.empty((n, 2))
    pos[:, 0] = walker.joints[:, 0] - math.fsum((walker.joints[:, 0] * mass).tolist()) / math.fsum(mass.tolist())
    h0, _ = _ground(terrain, pos[:, 0])
    pos[:, 1] = walker.joints[:, 1] + float(np.max(h0 - walker.joints[:, 1]))
    traj = np.empty((steps + 1 if record else 0, n, 2))
    com = np.empty(steps + 1)
    strain = np.empty(1)
    omega = 2.0 * math.pi * MUSCLE_SPRING_HZ
    h = DT / SUBSTEPS
    kernel.run(pos, np.zeros((n, 2)), 1.0 / mass, mass, np.ascontiguousarray(walker.a, dtype=np.int64),
               np.ascontiguousarray(walker.b, dtype=np.int64), nb, np.ascontiguousarray(rest), target,
               _TERRAIN_CODES[terrain], HILL_HEIGHT, HILL_PERIOD, UPHILL_SLOPE, steps, SUBSTEPS, BONE_SWEEPS[0],
               BONE_SWEEPS[1], BONE_TOLERANCE, DT, GRAVITY, FRICTION, 1.0 - AIR_DRAG * h,
               1.0 / (omega * omega * h * h), 2.0 * MUSCLE_DAMPING / (omega * h), traj, com, strain)
    if not (np.isfinite(pos).all() and np.isfinite(com).all()):
        raise FloatingPointError("the simulation state stopped being finite")
    fitness, net, d = sustained_travel(com, settle_steps=settle)
    return Rollout(
        distance=fitness,
        net_displacement=net,
        cycle_progress=tuple(d.tolist()),
        com_start=float(com[settle]),
        com_end=float(com[-1]),
        max_bone_strain=float(strain[0]),
        steps=steps,
        trajectory=traj if record else None,
    )
