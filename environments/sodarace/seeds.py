"""Seed programs of Sodarace: square, radial, wheel, runner, galloper and a CPPN-style lattice.

Each is a complete program that imports the builder, defines ``make_walker()``
and returns a valid walker (``tests/environments/test_sodarace.py`` checks
that all six run, are valid and move). They are written for mutation: shape,
size, amplitude and phase are named constants, amplitudes stay well inside
the 0.5 limit, and loops build repeated parts so a change of count keeps the
walker valid.
"""

from __future__ import annotations

__all__ = ["SEEDS"]

SQUARE = '''"""A square frame that rocks and shuffles: bones on three sides, muscles on the rest."""
from environments.sodarace import Walker


def make_walker():
    w = Walker()
    size = 1.0  # side length, m
    bottom_left = w.add_joint(0.0, 0.0)
    bottom_right = w.add_joint(size, 0.0)
    top_right = w.add_joint(size, size)
    top_left = w.add_joint(0.0, size)
    w.add_bone(bottom_left, bottom_right)
    w.add_bone(top_right, top_left)
    w.add_bone(bottom_left, top_right)
    w.add_muscle(bottom_right, top_right, amplitude=0.3, phase=0.0)
    w.add_muscle(top_left, bottom_left, amplitude=0.3, phase=0.25)
    w.add_muscle(bottom_right, top_left, amplitude=0.2, phase=0.5)
    return w
'''

RADIAL = '''"""A hub with spokes to a ring of joints; the spokes pulse in a wave around the ring."""
import math

from environments.sodarace import Walker


def make_walker():
    w = Walker()
    spokes = 8
    radius = 0.7  # m
    amplitude = 0.3
    wave = 1.0  # phase advance (cycles) once around the ring
    hub = w.add_joint(0.0, radius)
    rim = []
    for i in range(spokes):
        angle = 2 * math.pi * i / spokes
        rim.append(w.add_joint(radius * math.cos(angle), radius + radius * math.sin(angle)))
    for i in range(spokes):
        w.add_muscle(hub, rim[i], amplitude=amplitude, phase=wave * i / spokes)
        w.add_bone(rim[i], rim[(i + 1) % spokes])
    return w
'''

WHEEL = '''"""A wheel: an outer and an inner ring braced by bones, with muscles between the rings
contracting one after the other so that the wheel deforms and rolls."""
import math

from environments.sodarace import Walker


def make_walker():
    w = Walker()
    segments = 10
    outer_radius = 0.6  # m
    inner_radius = 0.35
    amplitude = 0.4
    wave = -1.0  # phase advance (cycles) once around the wheel; the sign sets the direction
    lag = 0.25  # phase of each segment's second muscle behind its first, cycles
    outer, inner = [], []
    for i in range(segments):
        angle = 2 * math.pi * i / segments
        half = math.pi / segments
        outer.append(w.add_joint(outer_radius * math.cos(angle), outer_radius * math.sin(angle)))
        inner.append(w.add_joint(inner_radius * math.cos(angle + half), inner_radius * math.sin(angle + half)))
    for i in range(segments):
        j = (i + 1) % segments
        w.add_bone(outer[i], outer[j])
        w.add_bone(inner[i], inner[j])
        w.add_muscle(outer[i], inner[i], amplitude=amplitude, phase=wave * i / segments)
        w.add_muscle(outer[j], inner[i], amplitude=amplitude, phase=wave * i / segments + lag)
    return w
'''

RUNNER = '''"""A runner: a stiff body on two legs; hip muscles swing each leg, the legs half a cycle apart."""
from environments.sodarace import Walker


def make_walker():
    w = Walker()
    length = 1.2  # body length, m
    height = 0.5  # hip height, m
    swing = 0.3  # hip muscle amplitude
    lift = 0.25  # knee muscle amplitude
    lag = 0.25  # knee phase behind the hip, cycles
    hips = [w.add_joint(x, height) for x in (0.0, length / 2, length)]
    back = [w.add_joint(x, height + 0.3) for x in (0.0, length / 2, length)]
    for i in range(2):
        w.add_bone(hips[i], hips[i + 1])
        w.add_bone(back[i], back[i + 1])
        w.add_bone(back[i], hips[i + 1])
    for i in range(3):
        w.add_bone(hips[i], back[i])
    for hip, phase in ((0, 0.0), (2, 0.5)):
        x = w.joints[hips[hip]][0]
        knee = w.add_joint(x + 0.1, height / 2)
        foot = w.add_joint(x, 0.0)
        w.add_muscle(hips[hip], knee, amplitude=swing, phase=phase)
        w.add_muscle(hips[1], knee, amplitude=swing, phase=phase + 0.5)
        w.add_muscle(knee, foot, amplitude=lift, phase=phase + lag)
        w.add_bone(back[hip], knee)
        w.add_bone(hips[1], foot)  # the foot's second connection: a leg is a triangle, not a hinge
    return w
'''

GALLOPER = '''"""A galloper: a long body on four legs; front and hind pairs move almost together,
the hind pair lagging the front pair, like a horse's gallop."""
from environments.sodarace import Walker


def make_walker():
    w = Walker()
    length = 1.6  # body length, m
    height = 0.6  # body height, m
    stride = 0.3  # leg muscle amplitude
    pair_lag = 0.1  # phase between the legs of a pair, cycles
    hind_lag = 0.4  # phase of the hind pair behind the front pair, cycles
    spine = [w.add_joint(length * i / 4, height) for i in range(5)]
    ridge = [w.add_joint(length * (i + 0.5) / 4, height + 0.25) for i in range(4)]
    for i in range(4):
        w.add_bone(spine[i], spine[i + 1])
        w.add_bone(spine[i], ridge[i])
        w.add_bone(ridge[i], spine[i + 1])
    for i in range(3):
        w.add_bone(ridge[i], ridge[i + 1])
    legs = ((0, 0.0), (1, pair_lag), (3, hind_lag), (4, hind_lag + pair_lag))
    for hip, phase in legs:
        x = w.joints[spine[hip]][0]
        knee = w.add_joint(x + 0.08, height / 2)
        foot = w.add_joint(x, 0.0)
        neighbour = spine[1] if hip < 2 else spine[3]
        w.add_muscle(spine[hip], knee, amplitude=stride, phase=phase)
        w.add_muscle(neighbour, knee, amplitude=stride, phase=phase + 0.5)
        w.add_muscle(knee, foot, amplitude=stride, phase=phase + 0.25)
        w.add_bone(ridge[min(hip, 3)], knee)
        w.add_bone(neighbour, foot)  # the foot's second connection: a leg is a triangle, not a hinge
    return w
'''

CPPN = '''"""A CPPN-style lattice: a grid of joints where every pair of neighbours is connected,
and a small fixed network of sines and Gaussians of the two endpoints' coordinates
decides whether the connection is a muscle, with which amplitude and phase."""
import math

from environments.sodarace import Walker


def cppn(x1, y1, x2, y2):
    """(activation, phase) of the connection between (x1, y1) and (x2, y2)."""
    dx, dy = x2 - x1, y2 - y1
    h1 = math.sin(3.0 * x1 + 1.5 * y2)
    h2 = math.exp(-((x1 + x2 - 1.2) ** 2))
    h3 = math.tanh(2.0 * dx - 1.0 * dy + 0.5)
    activation = 0.8 * h1 * h2 + 0.6 * h3 - 0.3
    phase = 0.5 * math.sin(2.0 * (x1 + y1)) + 0.3 * h3
    return activation, phase


def make_walker():
    w = Walker()
    cols, rows = 4, 3
    spacing = 0.4  # m between neighbouring joints
    reach = 1.5  # connect joints up to this many spacings apart (1.5: diagonals too)
    threshold = 0.2  # activation above which a connection is a muscle
    grid = {}
    for i in range(cols):
        for j in range(rows):
            grid[i, j] = w.add_joint(i * spacing, j * spacing)
    cells = sorted(grid)
    for p in range(len(cells)):
        for q in range(p + 1, len(cells)):
            (i1, j1), (i2, j2) = cells[p], cells[q]
            if math.hypot(i2 - i1, j2 - j1) > reach:
                continue
            x1, y1, x2, y2 = i1 * spacing, j1 * spacing, i2 * spacing, j2 * spacing
            activation, phase = cppn(x1, y1, x2, y2)
            if activation > threshold:
                amplitude = min(0.45, 0.5 * (activation - threshold))
                w.add_muscle(grid[cells[p]], grid[cells[q]], amplitude=amplitude, phase=phase)
            else:
                w.add_bone(grid[cells[p]], grid[cells[q]])
    return w
'''

#: name -> program source, in the order the environment offers them
SEEDS: dict[str, str] = {
    "square": SQUARE,
    "radial": RADIAL,
    "wheel": WHEEL,
    "runner": RUNNER,
    "galloper": GALLOPER,
    "cppn": CPPN,
}
