"""The inner loop of the Sodarace simulation: XPBD substeps over joints, bones, muscles and ground.

One function, :func:`run`, written in plain Python over numpy arrays so that
numba can compile it (``numba.njit``, no ``fastmath``) and so that, where
numba is missing, the very same code runs interpreted (about 100x slower)
with bit-identical results: both evaluate the same IEEE-754 double operations
in the same order (+, -, *, /, sqrt, floor, comparisons; no ``a*b+c``
contraction without fastmath, no reordered sums), and the only
transcendental functions (the muscles' sines) are computed by the caller
with Python's ``math``. :data:`COMPILED` says which one runs.

Numba compiles on the first call (about 1-3 s); :func:`warm_up` does it ahead
of time, and the sandbox's fork server runs it through the environment's
``preload`` (``environments.sodarace.warm``), so every scorer it forks starts
with the compiled code.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["run", "warm_up", "COMPILED", "FLAT", "HILLS", "UPHILL"]

FLAT, HILLS, UPHILL = 0, 1, 2  # terrain codes


def _run(pos, vel, inv_mass, mass, a, b, n_bones, rest, target, terrain, hill_height, hill_period,
         uphill_slope, steps, substeps, min_sweeps, max_sweeps, tolerance, dt, gravity, friction, drag,
         muscle_soft, muscle_gamma, traj, com, strain):
    """Advance ``steps`` steps of ``dt`` seconds, each in ``substeps`` XPBD substeps; arrays are updated in place.

    Shapes: ``pos``, ``vel`` (n, 2) metres and m/s; ``inv_mass``, ``mass`` (n,);
    ``a``, ``b`` (m,) int64 joint indices, bones first (``n_bones`` of them);
    ``rest`` (m,) bone lengths (muscle entries unused); ``target`` (steps + 1, m)
    muscle lengths at each step boundary, linearly interpolated within a step;
    ``traj`` (steps + 1, n, 2) or (0, n, 2) for no recording; ``com`` (steps + 1,)
    receives the centre of mass x after each step; ``strain`` (1,) the largest
    ``|length / rest - 1|`` of any bone at any step boundary.

    Per substep of ``h = dt / substeps``: gravity and inertia predict the
    positions; one pass moves every muscle (a damped XPBD spring, compliance
    ``muscle_soft = 1 / (k h^2)`` per unit inverse mass, damping
    ``muscle_gamma``); then Gauss-Seidel sweeps over every bone (an exact
    distance constraint, compliance 0) and every joint below the terrain
    (projected onto it, with Coulomb friction ``friction`` on the substep's
    tangential displacement) until a sweep begins with every bone within
    ``tolerance`` of its length (``min_sweeps`` to ``max_sweeps`` sweeps);
    velocities are the positional change over ``h``, times ``drag``.
    """
    n = pos.shape[0]
    m = a.shape[0]
    h = dt / substeps
    gh2 = gravity * h * h
    prev = np.empty((n, 2))
    push = np.empty(n)  # normal correction by the ground in this substep, m
    applied = np.empty(n)  # tangential correction by friction in this substep, m
    total = 0.0
    for i in range(n):
        total += mass[i]
    record = traj.shape[0] > 0
    if record:
        for i in range(n):
            traj[0, i, 0] = pos[i, 0]
            traj[0, i, 1] = pos[i, 1]
    c = 0.0
    for i in range(n):
        c += mass[i] * pos[i, 0]
    com[0] = c / total
    worst = 0.0
    for step in range(steps):
        for sub in range(substeps):
            frac = (sub + 1.0) / substeps
            # predict: inertia and gravity
            for i in range(n):
                prev[i, 0] = pos[i, 0]
                prev[i, 1] = pos[i, 1]
                pos[i, 0] += h * vel[i, 0]
                pos[i, 1] += h * vel[i, 1] - gh2
            # muscles: damped XPBD springs towards their current length (one XPBD iteration)
            for j in range(n_bones, m):
                p, q = a[j], b[j]
                wp, wq = inv_mass[p], inv_mass[q]
                dx = pos[q, 0] - pos[p, 0]
                dy = pos[q, 1] - pos[p, 1]
                length = math.sqrt(dx * dx + dy * dy)
                if length < 1e-9:
                    continue
                nx = dx / length
                ny = dy / length
                goal = target[step, j] + (target[step + 1, j] - target[step, j]) * frac
                closing = nx * ((pos[q, 0] - prev[q, 0]) - (pos[p, 0] - prev[p, 0])) \
                    + ny * ((pos[q, 1] - prev[q, 1]) - (pos[p, 1] - prev[p, 1]))
                lam = -((length - goal) + muscle_gamma * closing) / ((wp + wq) * (1.0 + muscle_gamma + muscle_soft))
                pos[p, 0] -= wp * lam * nx
                pos[p, 1] -= wp * lam * ny
                pos[q, 0] += wq * lam * nx
                pos[q, 1] += wq * lam * ny
            # bones (exact distance constraints) and ground contacts (Coulomb friction on the
            # substep's tangential displacement, up to FRICTION times the normal push so far):
            # Gauss-Seidel sweeps of both, so that neither undoes the other, until a sweep starts
            # with every bone within ``tolerance`` of its length (at least ``min_sweeps``, at most
            # ``max_sweeps``); contacts come last, so joints end every substep on or above the ground
            for i in range(n):
                push[i] = 0.0
                applied[i] = 0.0
            for sweep in range(max_sweeps):
                residual = 0.0  # largest relative bone error met in this sweep, before correcting it
                for k in range(n_bones):
                    # alternate the order (symmetric Gauss-Seidel): corrections travel both ways along chains
                    j = k if sweep % 2 == 0 else n_bones - 1 - k
                    p, q = a[j], b[j]
                    wp, wq = inv_mass[p], inv_mass[q]
                    dx = pos[q, 0] - pos[p, 0]
                    dy = pos[q, 1] - pos[p, 1]
                    length = math.sqrt(dx * dx + dy * dy)
                    if length < 1e-9:
                        continue
                    err = abs(length - rest[j]) / rest[j]
                    if err > residual:
                        residual = err
                    lam = -(length - rest[j]) / ((wp + wq) * length)  # per unit of (dx, dy)
                    pos[p, 0] -= wp * lam * dx
                    pos[p, 1] -= wp * lam * dy
                    pos[q, 0] += wq * lam * dx
                    pos[q, 1] += wq * lam * dy
                for i in range(n):
                    x = pos[i, 0]
                    y = pos[i, 1]
                    if terrain == FLAT:
                        ground, slope = 0.0, 0.0
                    elif terrain == HILLS:
                        u = x / hill_period
                        f = u - math.floor(u)  # position within the period, [0, 1]
                        w = 1.0 - abs(2.0 * f - 1.0)
                        dw = (2.0 if f < 0.5 else -2.0) / hill_period
                        ground = hill_height * w * w * (3.0 - 2.0 * w)
                        slope = hill_height * 6.0 * w * (1.0 - w) * dw
                    else:
                        ground = uphill_slope * abs(x)
                        slope = uphill_slope if x > 0.0 else (-uphill_slope if x < 0.0 else 0.0)
                    if y < ground:
                        # push out along the normal (vertically on flat ground), then friction: the
                        # tangential displacement this substep, less the friction already applied, is
                        # cancelled up to FRICTION times the total normal push (static when it is all
                        # cancelled); recomputed each sweep, so bones pushing a foot can make it slip
                        ny = 1.0 / math.sqrt(1.0 + slope * slope)
                        nx = -slope * ny  # (nx, ny) unit normal, (ny, -nx) unit tangent
                        if terrain == FLAT:
                            depth = ground - y
                            pos[i, 1] = ground
                        else:
                            depth = (ground - y) * ny
                            pos[i, 0] += depth * nx
                            pos[i, 1] += depth * ny
                        push[i] += depth
                        limit = friction * push[i]
                        cur = (pos[i, 0] - prev[i, 0]) * ny - (pos[i, 1] - prev[i, 1]) * nx
                        free = cur - applied[i]
                        if free > limit:
                            kept = free - limit
                        elif free < -limit:
                            kept = free + limit
                        else:
                            kept = 0.0
                        applied[i] = kept - free
                        pos[i, 0] += (kept - cur) * ny
                        pos[i, 1] -= (kept - cur) * nx
                if sweep + 1 >= min_sweeps and residual < tolerance:
                    break  # the bones were within tolerance when this sweep began
            for i in range(n):
                vel[i, 0] = (pos[i, 0] - prev[i, 0]) / h * drag
                vel[i, 1] = (pos[i, 1] - prev[i, 1]) / h * drag
        c = 0.0
        for i in range(n):
            c += mass[i] * pos[i, 0]
        com[step + 1] = c / total
        for j in range(n_bones):
            p, q = a[j], b[j]
            dx = pos[q, 0] - pos[p, 0]
            dy = pos[q, 1] - pos[p, 1]
            s = abs(math.sqrt(dx * dx + dy * dy) / rest[j] - 1.0)
            if not s <= worst:  # also catches NaN
                worst = s
        if record:
            for i in range(n):
                traj[step + 1, i, 0] = pos[i, 0]
                traj[step + 1, i, 1] = pos[i, 1]
    strain[0] = worst


try:  # numba is a declared dependency; the interpreted fallback gives the same numbers, slowly
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only where numba cannot be installed
    _numba = None

#: True where numba compiles the loop (False without numba or with NUMBA_DISABLE_JIT=1)
COMPILED: bool = _numba is not None and not _numba.config.DISABLE_JIT
run = _numba.njit(cache=False, nogil=True)(_run) if _numba is not None else _run


def warm_up() -> None:
    """Compile :func:`run` now (numba compiles on the first call): a two-joint walker for one step."""
    pos = np.array([[0.0, 0.0], [1.0, 0.0]])
    mass = np.array([1.0, 1.0])
    a = np.array([0, 0], dtype=np.int64)
    b = np.array([1, 1], dtype=np.int64)
    run(pos, np.zeros((2, 2)), 1.0 / mass, mass, a, b, 1, np.ones(2), np.ones((2, 2)), FLAT, 0.2, 2.0,
        0.15, 1, 2, 1, 2, 1e-3, 0.02, 9.81, 0.8, 1.0, 1.0, 1.0, np.empty((0, 2, 2)), np.empty(2), np.empty(1))
