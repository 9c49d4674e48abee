"""Circle packing: place n circles in the unit square, maximising the sum of their radii.

The AlphaEvolve benchmark (also used by OpenEvolve and ShinkaEvolve), with
n = 26 by default. Published bests for n = 26: 2.635983 (ShinkaEvolve),
2.6358628 (AlphaEvolve). A program defines ``pack()`` returning
``(centers, radii)``; :meth:`CirclePacking.score` verifies the packing exactly
(tolerance 0) and scores it by the sum of radii.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from elm.config import CirclePackingEnvConfig
from elm.environment import Environment, InvalidProgram, load_entry_point, to_jsonable
from elm.types import DescriptorSpace, Evaluation, TaskContext

_DEFAULTS = CirclePackingEnvConfig()  # the one place of the defaults

__all__ = ["CirclePacking"]

#: a circle counts as touching the boundary when its gap to the nearest side is at most this
BORDER_TOLERANCE = 1e-3

# Seed programs. ``__N__`` is replaced by the environment's n. Every seed lays
# out centre positions from numeric constants, clips them into the square and
# derives radii that are valid for *any* distinct centres (wall distance,
# proportional shrinking of every overlapping pair, a greedy growth pass, then
# a 1e-9 relative safety margin), so perturbing the layout constants mostly
# keeps children valid: about 66 % of GPMutator() children (1-3 random edits;
# 58 % without its grow edit) of these seeds are still valid packings. Layouts are written with
# comprehensions / numpy arrays rather than append loops, so most statements of
# ``pack`` are first bindings the GP mutator does not delete. Every layout
# produces at least n points for any n >= 2 and keeps the first n. For n = 26
# the seeds score 2.39 (grid), 2.37 (staggered rows), 2.08 (rings) and 1.90
# (sunflower), against a best known 2.636.

_RADII_HELPER = '''

def valid_radii(centers):
    """Radii that make any distinct centres inside the square a valid packing.

    Start from each centre's distance to the nearest wall and shrink every
    overlapping pair in proportion until it just touches (shrinking never
    creates a new overlap, so one pass suffices). Then let each circle in turn
    grow into the slack around it. The final division leaves a relative
    safety margin of 1e-9 for rounding.
    """
    n = len(centers)
    wall = np.minimum(centers, 1.0 - centers).min(axis=1)
    r = wall.copy()
    for i in range(n):
        for j in range(i):
            d = np.hypot(*(centers[i] - centers[j]))
            r[[i, j]] *= min(1.0, d / r[[i, j]].sum())
    for i in range(n):
        others = np.delete(np.arange(n), i)
        gaps = np.hypot(*(centers[others] - centers[i]).T) - r[others]
        r[i] = min(wall[i], gaps.min())
    return r / (1 + 1e-9)
'''

_SEED_GRID = '''"""A square grid of circles, with the leftover circles squeezed into its gaps."""
import numpy as np


def pack():
    n = __N__
    side = max(2, int(np.sqrt(n)))  # 5 for n = 26: a 5 x 5 grid plus one
    x0, y0 = 0.5, 0.5  # position of the first circle, in cells
    sx, sy = 1.0, 1.0  # cell width and height, in units of 1 / side
    pts = [((j + x0) * sx / side, (i + y0) * sy / side) for i in range(side) for j in range(side)]
    # leftovers go where four grid circles meet, starting bottom left
    gap_x, gap_y = 1.0, 1.0
    pts += [((j + gap_x) * sx / side, (i + gap_y) * sy / side) for i in range(side) for j in range(side)]
    centers = np.clip(np.array(pts[:n], dtype=float), 0.01, 0.99)
    return centers, valid_radii(centers)
''' + _RADII_HELPER

_SEED_HEX = '''"""Staggered rows: a hexagonal-style layout, alternate rows shifted by half a spacing."""
import numpy as np


def pack():
    n = __N__
    cols = max(2, round(np.sqrt(n)))  # circles in an unshifted row
    rows = int(np.ceil(2 * n / (2 * cols - 1)))
    dx = 1.0 / cols  # horizontal spacing
    dy = 1.0 / rows  # vertical spacing
    shift = 0.5  # odd rows move right by this fraction of dx
    x0, y0 = 0.5, 0.5  # first circle, in units of dx and dy
    pts = [
        ((j + x0 + shift * (row % 2)) * dx, (row + y0) * dy)
        for row in range(rows + 1)
        for j in range(cols)
    ]
    pts = [(x, y) for x, y in pts if x < 1.0]  # drop circles pushed off the right edge
    centers = np.clip(np.array(pts[:n], dtype=float), 0.01, 0.99)
    return centers, valid_radii(centers)
''' + _RADII_HELPER

_SEED_RINGS = '''"""Concentric rings: one centre circle and two rings around it."""
import numpy as np


def pack():
    n = __N__
    cx, cy = 0.5, 0.5  # centre of the rings
    inner = 0.22  # ring radii
    outer = 0.42
    twist = 0.5  # outer ring rotated by this fraction of a step
    # the circles around the centre one are split between the rings by circumference
    n_inner = int(round((n - 1) * inner / (inner + outer)))
    n_outer = n - 1 - n_inner
    a = 2 * np.pi * np.arange(n_inner) / max(n_inner, 1)
    b = 2 * np.pi * (np.arange(n_outer) + twist) / max(n_outer, 1)
    x = np.concatenate([[cx], cx + inner * np.cos(a), cx + outer * np.cos(b)])
    y = np.concatenate([[cy], cy + inner * np.sin(a), cy + outer * np.sin(b)])
    centers = np.clip(np.column_stack([x, y])[:n], 0.01, 0.99)
    return centers, valid_radii(centers)
''' + _RADII_HELPER

_SEED_SUNFLOWER = '''"""A sunflower (phyllotaxis) spiral: point k at angle k * golden angle, radius ~ sqrt(k)."""
import numpy as np


def pack():
    n = __N__
    golden = 2.39996  # golden angle in radians
    spread = 0.47  # distance of the outermost point from the centre
    stretch = 1.0  # horizontal / vertical aspect of the spiral
    cx, cy = 0.5, 0.5
    k = np.arange(n)
    rho = spread * np.sqrt((k + 0.5) / n)
    theta = k * golden
    x = cx + stretch * rho * np.cos(theta)
    y = cy + rho * np.sin(theta)
    centers = np.clip(np.column_stack([x, y])[:n], 0.01, 0.99)
    return centers, valid_radii(centers)
''' + _RADII_HELPER

_SEEDS = (_SEED_GRID, _SEED_HEX, _SEED_RINGS, _SEED_SUNFLOWER)


def _jsonable(value: Any) -> Any:
    """:func:`~elm.environment.to_jsonable`, with non-finite floats marked at any depth.

    ``to_jsonable`` turns a numpy array into ``tolist()`` output without
    visiting its elements, so a NaN inside an array would stay a float NaN
    (not valid strict JSON). This walks the converted lists too and marks
    every non-finite float as ``'nan'``/``'inf'``/``'-inf'``, so the output
    always crosses a strict JSON boundary and :meth:`CirclePacking.score`
    rejects it by name.
    """
    if hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return to_jsonable(value)


def _as_number(value: Any, where: str) -> float:
    """``value`` as a finite float64, or InvalidProgram naming ``where``.

    Accepts Python ints and floats only (what JSON decoding yields); rejects
    bools, strings (including the ``'nan'``/``'inf'`` markers of
    :func:`~elm.environment.to_jsonable`), None, containers, NaN and infinities.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidProgram(f"{where} is {value!r} ({type(value).__name__}), not a finite number")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidProgram(f"{where} = {value!r} is too large for a float") from None
    if not math.isfinite(number):
        raise InvalidProgram(f"{where} is {number!r}, not a finite number")
    return number


class CirclePacking(Environment):
    """Pack n circles into the unit square to maximise the sum of their radii.

    Args:
        n: number of circles (>= 2; the benchmark uses 26).

    Verification (in :meth:`score`, tolerance 0, all in IEEE float64):

    * output is ``{"centers": [[x, y]] * n, "radii": [r] * n}`` with every
      value a finite int or float (bools, strings, NaN, inf, None and nested
      containers are rejected);
    * every ``r_i > 0``;
    * every circle lies in the square: ``x_i - r_i >= 0``, ``x_i + r_i <= 1``,
      ``y_i - r_i >= 0``, ``y_i + r_i <= 1`` (each left side is one rounded
      float64 operation);
    * no two circles overlap: ``d_ij >= r_i + r_j`` where
      ``d_ij = sqrt((x_i - x_j)**2 + (y_i - y_j)**2)``, each operation
      correctly rounded (``np.sqrt`` of a sum of squares, *not* ``np.hypot``,
      whose rounding depends on the platform's libm). Touching is allowed.

    Fitness is the sum of radii (``math.fsum``, correctly rounded).

    Descriptors (bounds inclusive; every valid packing lands inside them):

    * ``radius_cv`` in [0, 1]: coefficient of variation of the radii,
      ``std(r) / mean(r)`` (population std). 0 for equal circles; above about
      0.5 only for packings mixing big and tiny circles. It can mathematically
      exceed 1 (up to ``sqrt(n - 1)``), so it is reported clipped to 1.
    * ``border_fraction`` in [0, 1]: fraction of circles whose gap to the
      nearest side of the square, ``min(x - r, 1 - x - r, y - r, 1 - y - r)``,
      is at most ``BORDER_TOLERANCE`` = 1e-3.

    Observed for n = 26: the four seeds sit at radius_cv 0.10-0.27 and
    border_fraction 0.00-0.42, each in its own cell of the default 12 x 12
    grid; valid GP children of the seeds span radius_cv 0.06-1 (5-95 %:
    0.10-0.72) and border_fraction 0-0.92 (5-95 %: 0-0.50), filling about 50
    cells from 1000 children. The two are nearly uncorrelated with each other
    (r = -0.09). Across all children poor packings have high radius_cv (a few
    tiny circles), but children with fitness > 2.2 still span radius_cv
    0.08-0.34 and border_fraction 0.12-0.62, so both keep separating good
    packings.
    """

    name: ClassVar[str] = "circle_packing"
    entry_point: ClassVar[str] = "pack"
    descriptor_names: ClassVar[tuple[str, str]] = ("radius_cv", "border_fraction")

    def __init__(self, *, n: int = _DEFAULTS.n) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {n!r} ({type(n).__name__})")
        if n < 2:
            raise ValueError(f"n must be >= 2 circles, got {n}")
        self.n = n

    def __repr__(self) -> str:
        return f"CirclePacking(n={self.n})"

    @property
    def descriptor_space(self) -> DescriptorSpace:
        return DescriptorSpace(
            names=self.descriptor_names,
            lower=(0.0, 0.0),
            upper=(1.0, 1.0),
            bins=(12, 12),
        )

    def seed_programs(self) -> Sequence[str]:
        """Four layouts (grid + gaps, staggered rows, rings, sunflower), each valid for this n."""
        return [s.replace("__N__", str(self.n)) for s in _SEEDS]

    def task(self) -> TaskContext:
        n = self.n
        return TaskContext(
            name=self.name,
            entry_point=self.entry_point,
            signature="def pack() -> tuple[np.ndarray, np.ndarray]:",
            description=(
                f"Pack {n} non-overlapping circles inside the unit square [0, 1] x [0, 1] so that "
                f"the sum of their radii is as large as possible. Write a Python function "
                f"`pack()` that takes no arguments and returns `(centers, radii)`: `centers` of "
                f"shape ({n}, 2) holding each circle's (x, y) centre, and `radii` of shape ({n},) "
                f"holding each radius (numpy arrays or lists of floats). The packing is checked "
                f"exactly, with zero tolerance, in float64: every radius > 0; every circle inside "
                f"the square (x - r >= 0, x + r <= 1, y - r >= 0, y + r <= 1); and for every pair "
                f"sqrt((x_i - x_j)**2 + (y_i - y_j)**2) >= r_i + r_j (touching is allowed). Any "
                f"violation, however small, makes the program invalid, so shrink radii by a tiny "
                f"safety margin (e.g. 1e-9) after optimising. The score is the sum of the radii; "
                f"for n = 26 the best known value is about 2.636. The program may use numpy and "
                f"the standard library, must be deterministic, and must finish within the time limit."
            ),
            api_doc=(
                "import numpy as np\n\n"
                "def pack() -> tuple[np.ndarray, np.ndarray]:\n"
                f'    """Return centers, shape ({n}, 2), and radii, shape ({n},), of a valid packing."""\n'
            ),
        )

    def execute(self, source: str) -> Any:
        """Run ``pack()`` and return ``{"centers": ..., "radii": ...}`` as plain JSON data.

        Runs in the untrusted process, so it only unpacks the pair; every
        check is in :meth:`score`.
        """
        fn = load_entry_point(source, self.entry_point)
        result = fn()
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise InvalidProgram(
                f"pack() must return a pair (centers, radii), got {type(result).__name__}"
                + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
            )
        centers, radii = result
        return {"centers": _jsonable(centers), "radii": _jsonable(radii)}

    def score(self, output: Any) -> Evaluation:
        """Verify the packing exactly and return fitness = sum of radii.

        Raises:
            InvalidProgram: with the first violation found, e.g.
                ``"circles 3 and 7 overlap by 1.2e-05 (...)"``.
        """
        x, y, r = self._parse(output)
        n = self.n

        bad = np.flatnonzero(~(r > 0))
        if bad.size:
            i = int(bad[0])
            raise InvalidProgram(f"radii[{i}] = {r[i]!r} is not positive")

        # Walls: each comparison is on one rounded float64 operation.
        for label, lhs, ok in (
            ("left edge (x - r < 0)", x - r, x - r >= 0),
            ("right edge (x + r > 1)", x + r, x + r <= 1),
            ("bottom edge (y - r < 0)", y - r, y - r >= 0),
            ("top edge (y + r > 1)", y + r, y + r <= 1),
        ):
            outside = np.flatnonzero(~ok)
            if outside.size:
                i = int(outside[0])
                by = -lhs[i] if lhs[i] < 0 else lhs[i] - 1
                raise InvalidProgram(
                    f"circle {i} crosses the {label} by {by:.3g} "
                    f"(x={x[i]!r}, y={y[i]!r}, r={r[i]!r}); "
                    f"{outside.size} circle(s) outside the square"
                )

        # Pairs: d_ij = sqrt(dx*dx + dy*dy), every operation correctly rounded.
        dx = x[:, None] - x[None, :]
        dy = y[:, None] - y[None, :]
        dist = np.sqrt(dx * dx + dy * dy)
        rsum = r[:, None] + r[None, :]
        iu, ju = np.triu_indices(n, k=1)
        slack = dist[iu, ju] - rsum[iu, ju]
        overlapping = np.flatnonzero(dist[iu, ju] < rsum[iu, ju])
        if overlapping.size:
            worst = int(overlapping[np.argmin(slack[overlapping])])
            i, j = int(iu[worst]), int(ju[worst])
            raise InvalidProgram(
                f"circles {i} and {j} overlap by {rsum[i, j] - dist[i, j]:.3g} "
                f"(distance {dist[i, j]!r} < r_{i} + r_{j} = {rsum[i, j]!r}); "
                f"{overlapping.size} overlapping pair(s)"
            )

        wall_gap = np.minimum.reduce([x - r, 1 - x - r, y - r, 1 - y - r])
        radius_cv = float(min(1.0, np.std(r) / np.mean(r)))
        border_fraction = float(np.mean(wall_gap <= BORDER_TOLERANCE))
        return Evaluation(
            fitness=math.fsum(r.tolist()),
            descriptor=(radius_cv, border_fraction),
            info={
                "n": n,
                "min_radius": float(r.min()),
                "max_radius": float(r.max()),
                "min_pair_gap": float(slack.min()),
                "min_wall_gap": float(wall_gap.min()),
            },
        )

    def _parse(self, output: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Check the raw output's structure and types; return x, y, r as float64 arrays."""
        n = self.n
        if not isinstance(output, dict):
            raise InvalidProgram(f"output must be a dict with 'centers' and 'radii', got {type(output).__name__}")
        for key in ("centers", "radii"):
            if key not in output:
                raise InvalidProgram(f"output has no {key!r} (keys: {sorted(map(str, output))})")
        centers, radii = output["centers"], output["radii"]
        if not isinstance(centers, list):
            raise InvalidProgram(
                f"centers must be a sequence of {n} [x, y] pairs, got {type(centers).__name__} {centers!r:.80}"
            )
        if len(centers) != n:
            raise InvalidProgram(f"centers has {len(centers)} entries, expected {n} (shape ({n}, 2))")
        if not isinstance(radii, list):
            raise InvalidProgram(f"radii must be a sequence of {n} numbers, got {type(radii).__name__} {radii!r:.80}")
        if len(radii) != n:
            raise InvalidProgram(f"radii has {len(radii)} entries, expected {n} (shape ({n},))")
        x = np.empty(n, dtype=np.float64)
        y = np.empty(n, dtype=np.float64)
        r = np.empty(n, dtype=np.float64)
        for i, c in enumerate(centers):
            if not isinstance(c, list) or len(c) != 2:
                raise InvalidProgram(f"centers[{i}] must be an [x, y] pair, got {c!r:.80} (shape ({n}, 2) expected)")
            x[i] = _as_number(c[0], f"centers[{i}][0]")
            y[i] = _as_number(c[1], f"centers[{i}][1]")
        for i, v in enumerate(radii):
            r[i] = _as_number(v, f"radii[{i}]")
        return x, y, r
