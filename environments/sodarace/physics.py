"""Deterministic mass-spring physics for Sodarace walkers, vectorised with numpy.

Model (SI units: metres, seconds, kilograms):

* **Joints** are point masses (:func:`~environments.sodarace.walker.walker_mass`).
* **Bones and muscles** are damped springs between two joints. Spring ``j``
  joining joints of masses ``m_a`` and ``m_b`` has stiffness
  ``k_j = STIFFNESS * mu_j`` and damping ``c_j = 2 * DAMPING_RATIO * sqrt(STIFFNESS) * mu_j``
  with ``mu_j = m_a m_b / (m_a + m_b)``, so every spring on its own oscillates
  at ``sqrt(STIFFNESS)`` = 20 rad/s whatever the masses, and bones sag about
  ``g / STIFFNESS`` = 2.5 cm per metre under gravity.
* **Muscles** change their rest length: ``L0 * (1 + A sin(2 pi (f t' + phase)))``
  with ``f = MUSCLE_HZ`` and ``t'`` the time since the muscles switched on;
  the amplitude ``A`` ramps up linearly over ``RAMP_S`` to avoid a jolt.
* **Ground**: a joint below the terrain is put back on it along the surface
  normal and loses its velocity into the ground (inelastic contact);
  Coulomb friction (coefficient ``FRICTION``) then removes up to
  ``FRICTION`` times that normal velocity change from its tangential velocity,
  so a joint pressed into the ground sticks unless it is pushed hard sideways.
  That is what lets muscles push a body along.
* **Integration**: semi-implicit (symplectic) Euler with a fixed step
  ``DT`` = 1/50 s. With at most 10 connections per joint the stiffest mode stays
  below the stability limit ``2 / DT``.

A run: the walker is placed with its lowest joint on the terrain and its
centre of mass at x = 0; it first settles for ``SETTLE_S`` seconds with its
muscles locked at their rest lengths (so a body that topples over does so
before the clock starts), then its muscles work until ``duration_s``. The
distance is the horizontal displacement of the centre of mass between the end
of settling and the end of the run.

Determinism: the same walker gives bit-identical results in every process
on a machine, the host and a gVisor sandbox alike, whatever BLAS kernel or
SIMD extension numpy picks in each (a gVisor sandbox reports other CPU
features, and a BLAS ``matmul`` then differs in the last bits). The
simulation uses only correctly rounded operations (+, -, *, /, sqrt, min,
max, comparisons), sums joint forces with ``np.bincount`` (one sequential sum
in index order), and takes its few sines and cosines (muscle clocks and
phases, computed once) from Python's ``math``; the one matrix product, spring
vectors from an incidence matrix of 0 and +-1, is exact in any summation
order. Across machines results can differ only through the C library's
``sin``/``cos``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from environments.sodarace.walker import RULES, WalkerArrays, WalkerRules, walker_mass

__all__ = ["TERRAINS", "Rollout", "simulate", "DT", "MUSCLE_HZ", "SETTLE_S"]

DT = 1.0 / 50.0  # s, integration step
GRAVITY = 9.81  # m/s^2
STIFFNESS = 400.0  # 1/s^2, spring stiffness per unit reduced mass
DAMPING_RATIO = 0.3  # of each spring
FRICTION = 0.8  # Coulomb coefficient between joints and the ground
MUSCLE_HZ = 2.0  # every muscle's frequency
SETTLE_S = 1.0  # muscles locked while the body settles
RAMP_S = 1.0  # muscle amplitude ramps from 0 over this long after settling

#: terrain name -> (description, profile parameters); all are mirror-symmetric about x = 0,
#: where the walker starts, so moving left or right is equally hard.
TERRAINS: dict[str, str] = {
    "flat": "flat ground at height 0",
    "hills": "smooth hills 0.2 m high every 2 m, the walker starting in a trough",
    "uphill": "a valley: the ground rises by 15 cm per metre in both directions, h(x) = 0.15 |x|",
}
HILL_HEIGHT = 0.2  # m
HILL_PERIOD = 2.0  # m


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
        return 0.15 * np.abs(x), 0.15 * np.sign(x)
    return np.zeros_like(x), np.zeros_like(x)


@dataclass(frozen=True)
class Rollout:
    """Result of one simulation.

    ``distance`` (m) = ``|com_end - com_start|``, the horizontal displacement
    of the centre of mass from the end of settling to the end of the run.
    ``trajectory`` is None unless requested: (steps + 1, n, 2) joint positions.
    """

    distance: float
    com_start: float  # m; the centre of mass starts at x = 0, so this is how far settling moved it
    com_end: float
    steps: int
    trajectory: np.ndarray | None = None


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
        duration_s: total simulated time in seconds, > ``SETTLE_S``; the
            muscles work for ``duration_s - SETTLE_S`` seconds.
        rules: supply the joint mass and density (defaults: :data:`RULES`).
        record: keep every step's joint positions in ``Rollout.trajectory``.

    Raises:
        ValueError: unknown terrain or a duration not above the settling time.
        FloatingPointError: the state stopped being finite (cannot happen for
            walkers within the rules; reported rather than returning garbage).
    """
    if terrain not in TERRAINS:
        raise ValueError(f"unknown terrain {terrain!r}; choose one of {sorted(TERRAINS)}")
    if not (math.isfinite(duration_s) and duration_s > SETTLE_S):
        raise ValueError(f"duration_s must be a number above the settling time {SETTLE_S} s, got {duration_s!r}")
    n = len(walker.joints)
    m = len(walker.a)
    a, b = walker.a, walker.b
    rest = walker.rest_length
    mass = walker_mass(walker, rules)
    total_mass = math.fsum(mass.tolist())
    reduced = mass[a] * mass[b] / (mass[a] + mass[b])
    k = STIFFNESS * reduced
    c = 2.0 * DAMPING_RATIO * math.sqrt(STIFFNESS) * reduced

    # Incidence matrix: (S @ inc)[:, j] = S[:, b_j] - S[:, a_j], exact (one nonzero pair per column).
    cols = np.arange(m)
    inc = np.zeros((n, m))
    inc[a, cols] = -1.0
    inc[b, cols] = 1.0
    # Spring forces back onto joints: +F_j on a_j, -F_j on b_j, x then y, each summed by bincount.
    on_a = np.concatenate([a, a + n])
    on_b = np.concatenate([b, b + n])
    dt_per_mass2 = np.concatenate([DT / mass, DT / mass])

    steps = int(round(duration_s / DT))
    settle = int(round(SETTLE_S / DT))
    t = (np.arange(steps) - settle) * DT  # time since the muscles switched on
    ramp = np.clip(t / RAMP_S, 0.0, 1.0)[:, None]
    # sin(2 pi (f t + phase)) = sin(2 pi f t) cos(2 pi phase) + cos(2 pi f t) sin(2 pi phase)
    clock = [2.0 * math.pi * MUSCLE_HZ * v for v in t.tolist()]
    turns = [2.0 * math.pi * math.fmod(p, 1.0) for p in walker.phase.tolist()]
    wave = (np.array([math.sin(v) for v in clock])[:, None] * np.array([math.cos(v) for v in turns])[None, :]
            + np.array([math.cos(v) for v in clock])[:, None] * np.array([math.sin(v) for v in turns])[None, :])
    k_rest = k * rest * (1.0 + ramp * walker.amplitude[None, :] * wave)  # (steps, m): k_j * L_j(t)

    # State S = [x; y; vx; vy], shape (4, n). Centre of mass to x = 0, lowest joint on the ground.
    S = np.zeros((4, n))
    S[0] = walker.joints[:, 0] - math.fsum((walker.joints[:, 0] * mass).tolist()) / total_mass
    h0, _ = _ground(terrain, S[0])
    S[1] = walker.joints[:, 1] + float(np.max(h0 - walker.joints[:, 1]))
    X, Y, VX, VY = S
    P, V = S[:2], S[2:]
    flat = terrain == "flat"
    gdt = GRAVITY * DT
    traj = np.empty((steps + 1, n, 2)) if record else None
    if record:
        traj[0] = S[:2].T
    com_start = 0.0
    for i in range(steps):
        if i == settle:
            com_start = math.fsum((X * mass).tolist()) / total_mass
        D = S @ inc  # (4, m): dx, dy, dvx, dvy of each spring (b minus a)
        sq = D[:2] * D[:2]
        L = np.sqrt(sq[0] + sq[1])
        np.maximum(L, 1e-9, out=L)  # joints never meet exactly, but never divide by 0
        closing = D[:2] * D[2:]
        # tension / length: (k (L - L_rest) + c * closing speed) / L, then along (dx, dy)
        f = (k * L - k_rest[i] + c * (closing[0] + closing[1]) / L) / L
        F = (D[:2] * f).ravel()
        acc = np.bincount(on_a, F, 2 * n)
        acc -= np.bincount(on_b, F, 2 * n)
        acc *= dt_per_mass2
        V += acc.reshape(2, n)
        VY -= gdt
        P += DT * V
        if flat:
            dvn = np.minimum(VY, 0.0)  # normal velocity lost into the ground (<= 0)
            dvn *= Y < 0.0
            VY -= dvn
            np.maximum(Y, 0.0, out=Y)
            dvn *= FRICTION  # minus the friction limit: |slip removed| <= FRICTION * |dvn|
            VX -= np.maximum(np.minimum(VX, -dvn), dvn)
        else:
            h, slope = _ground(terrain, X)
            pen = np.maximum(h - Y, 0.0)  # vertical depth below the surface
            ny = 1.0 / np.sqrt(1.0 + slope * slope)
            nx = -slope * ny  # (nx, ny): unit normal; (ny, -nx): unit tangent
            X += pen * ny * nx
            Y += pen * ny * ny
            dvn = np.minimum(VX * nx + VY * ny, 0.0)
            dvn *= pen > 0.0
            VX -= dvn * nx
            VY -= dvn * ny
            dvn *= FRICTION  # minus the friction limit
            slip = np.maximum(np.minimum(VX * ny - VY * nx, -dvn), dvn)
            VX -= slip * ny
            VY += slip * nx
        if record:
            traj[i + 1] = S[:2].T
    if not np.isfinite(S).all():
        raise FloatingPointError("the simulation state stopped being finite")
    com_end = math.fsum((X * mass).tolist()) / total_mass
    return Rollout(
        distance=abs(com_end - com_start),
        com_start=com_start,
        com_end=com_end,
        steps=steps,
        trajectory=traj,
    )
