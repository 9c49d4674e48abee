"""The ELM paper's / OpenELM's walker API (environments.sodarace.openelm): programs written against
``walker_creator`` run here with only their import line changed; one program per seed family."""

from __future__ import annotations

import numpy as np
import pytest

from elm import InvalidProgram
from elm.environment import roundtrip_json
from environments import Sodarace, Walker
from environments.sodarace.openelm import SCALE, query_cppn, walker_creator
from environments.sodarace.walker import RULES, check_walker

# ------------------------------------------------------------------ one program per family of the paper's seeds
# Written for this test in the shape of OpenELM's seeds (same calls, sizes, counts and quirks).

HEAD = "from environments.sodarace.openelm import walker_creator, query_cppn\nimport math\n\n"

SQUARE = HEAD + '''
def make_walker():
    """A 10 x 10 frame with a centre joint: fixed sides, one fixed prong, three pulsing prongs."""
    wc = walker_creator()
    corners = [wc.add_joint(x, y) for x, y in ((0, 0), (0, 10), (10, 10), (10, 0))]
    centre = wc.add_joint(5, 5)
    for k in range(4):
        wc.add_muscle(corners[k], corners[(k + 1) % 4])
    wc.add_muscle(corners[3], centre)
    for corner, amplitude in zip(corners[:3], (5.0, 10.0, 2.0)):
        wc.add_muscle(corner, centre, amplitude, 0.0)
    return wc.get_walker()
'''

def radial(step_divisor: str) -> str:
    return HEAD + f'''
def ring(wc, cx, cy, radius, count):
    """Joints on a circle; the angle step is 6.28 / ({step_divisor})."""
    step = 3.14 * 2.0 / ({step_divisor})
    return [wc.add_joint(cx + radius * math.cos(k * step), cy + radius * math.sin(k * step)) for k in range(count)]


def make_walker():
    """A ring around a hub: fixed rim, spokes pulsing one after the other."""
    wc = walker_creator()
    count = 8
    rim = ring(wc, 5, 5, 5.0, count)
    hub = wc.add_joint(5, 5)
    for k in range(count):
        wc.add_muscle(rim[k], rim[(k + 1) % count])
        wc.add_muscle(rim[k], hub, k / count, k / count)
    return wc.get_walker()
'''

RADIAL = radial("count")
RADIAL_CLOSED = radial("count - 1")  # the last joint lands on the first: a degenerate ring

WHEEL = HEAD + '''
def make_walker():
    """Eight rim joints, each joined to itself and its next two (self-joins are dropped) and to a far hub."""
    wc = walker_creator()
    count = 8
    rim = []
    for k in range(count):
        angle = 6.28 / (count + 1) * k
        rim.append(wc.add_joint(0.5 + 1.5 * math.cos(angle), 5 + 1.5 * math.sin(angle)))
    hub = wc.add_joint(12, 6)
    for j in range(count):
        for i in range(count - 5):
            wc.add_muscle(rim[j], rim[(i + j) % count], 1.0, (j + 1) / count)
        wc.add_muscle(rim[j], hub, 3, (j + 1) / count)
    return wc.get_walker()
'''

GALLOPER = HEAD + '''
def block(wc, x0, y0, x1, y1, d):
    """Six joints; a block whose corners repeat another block's reuses that block's joints."""
    return (wc.add_joint(x0, y0), wc.add_joint(x1, y1), wc.add_joint(x1, y0),
            wc.add_joint(x0, y1), wc.add_joint(d, 0.5), wc.add_joint(x1, 0.5))


def make_walker(dx=0.0, dy=0.0, low=0, high=1.6):
    """Five blocks chained by strong muscles at three spans, the paper's galloper family."""
    wc = walker_creator()
    blocks = [
        block(wc, 5 + dx, -1 + dy, low, high, 4.5),
        block(wc, 0, -0.1, 8.0, 9.5, 0.03),
        block(wc, 5.5, -0.001, 5.0, 5.66, 0.07),
        block(wc, 5.5, -3.0, 6.0, 5.66, 0.07),
        block(wc, 0, dx, low, high, 1.0),
    ]
    chain = blocks[0] + blocks[1] + blocks[2] + blocks[4] + blocks[3] + blocks[2]
    centre = wc.add_joint(dx, dy)
    for k in range(len(chain) - 6):
        wc.add_muscle(chain[k], chain[k + 1], 30, 0.5)
    wc.add_muscle(chain[2], chain[4], 4.0, 0.8)
    for k in range(len(chain) - 2):
        wc.add_muscle(chain[k], chain[k + 2], 18.0, 60.0 / 5.5)
    for k in reversed(range(len(chain) - 6)):
        wc.add_muscle(chain[k], chain[k + 5], 4.0, 20.0 / 9.0)
    wc.add_muscle(centre, chain[7], 2.0, 90.0 / 9.0)
    return wc.get_walker()
'''

RUNNER = HEAD + '''
def make_walker(rows=1):
    """A 5 x 8 grid, densely joined by a rule on the grid indices: the paper's runner family."""
    wc = walker_creator()

    def connect(x1, y1, x2, y2):
        return x2 - x1 > 1 or x1 <= abs(y1 - y2)

    def amp(x1, y1, x2, y2):
        return abs(x1 - x2) + abs(y1 - y2)

    def phase(x1, y1, x2, y2):
        return -x1 / 2 - math.cos(math.pi / 9)

    query_cppn(wc, 5, 7 + rows, 2, connect, amp, phase)
    return wc.get_walker()
'''

CPPN = HEAD + '''
def make_walker():
    """An 8 x 3 grid, neighbours within 2.1 grid steps joined, amplitude and phase from the indices."""
    wc = walker_creator()

    def connect(x1, y1, x2, y2):
        return (x1 - x2) ** 2 + (y1 - y2) ** 2 <= 4.5

    def amp(x1, y1, x2, y2):
        return max(abs(x1 - x2), abs(y1 - y2))

    def phase(x1, y1, x2, y2):
        return x1 if x1 % 2 == 1 else -x1

    query_cppn(wc, 8, 3, 1.5, connect, amp, phase)
    return wc.get_walker()
'''

FAMILIES: dict[str, str] = {"square": SQUARE, "radial": RADIAL, "wheel": WHEEL, "galloper": GALLOPER,
                            "runner": RUNNER, "cppn": CPPN}


@pytest.fixture(scope="module")
def env() -> Sodarace:
    return Sodarace()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_seed_family_runs_unchanged_is_valid_and_moves(env, name):
    ev = env.evaluate_local(FAMILIES[name])
    assert ev.fitness > 0.1
    assert ev.info["max_bone_strain"] < 0.01
    space = env.descriptor_space
    assert all(lo <= v <= hi for v, lo, hi in zip(ev.descriptor[:2], space.lower[:2], space.upper[:2]))


def test_the_limits_admit_the_largest_families():
    env = Sodarace()
    runner = check_walker(roundtrip_json(env.execute(RUNNER)))
    degree = np.bincount(np.concatenate([runner.a, runner.b]))
    assert (len(runner.joints), runner.n_bones, len(runner.a)) == (40, 0, 410)
    assert degree.max() == 35 <= RULES.max_connections_per_joint
    galloper = check_walker(roundtrip_json(env.execute(GALLOPER)))
    # 30 add_joint calls; 6 repeat an earlier joint's place, so no connection reaches them
    assert (len(galloper.joints), len(galloper.a)) == (24, 94)
    assert np.bincount(np.concatenate([galloper.a, galloper.b])).max() == 15
    assert len(check_walker(roundtrip_json(env.execute(CPPN))).a) == 75


def test_a_ring_closing_onto_its_first_joint_is_invalid_naming_the_limit(env):
    with pytest.raises(InvalidProgram, match=r"joints 0 and 7 are 0.0035 m apart; the minimum is 0.005 m"):
        env.evaluate_local(RADIAL_CLOSED)


def test_joints_and_connections_map_as_documented():
    wc = walker_creator()
    a, b, c, d = wc.add_joint(0, 0), wc.add_joint(5, 0), wc.add_joint(0, 5), wc.add_joint(2.5, 5)
    assert b == (5 * SCALE, -0.0) and c == (0.0, -5 * SCALE)  # OpenELM's handles: y negated
    loose = wc.add_joint(9, 9)
    record = wc.add_muscle(a, b)
    assert record == [0, 1, {"type": "distance", "amplitude": 0.0, "phase": 0.0}]
    wc.add_muscle(b, c, -0.7, 0.5)  # (a + 1) / 2 = 0.15 < 0.2: a bone, as in IESoR
    wc.add_muscle(a, c, 0.0, 0.3)  # phase only: a muscle, half the largest swing
    wc.add_muscle(c, d, 4.0, 0.1)  # beyond 1: the largest swing
    wc.add_muscle(d, d, 1.0, 0.0)  # to itself: dropped
    w = wc.get_walker()
    assert isinstance(w, Walker)
    assert w.joints == ((0.0, 0.0), (5 * SCALE, 0.0), (0.0, 5 * SCALE), (2.5 * SCALE, 5 * SCALE))  # loose dropped
    assert w.bones == ((0, 1), (1, 2))
    assert w.muscles == (pytest.approx((0, 2, 0.25, 0.55)), pytest.approx((2, 3, 0.5, 0.35)))
    assert loose in wc.joints


def test_a_second_joint_at_the_same_place_is_the_first(env):
    wc = walker_creator()
    first = wc.add_joint(1, 1)
    wc.add_joint(3, 1)
    again = wc.add_joint(1, 1)
    wc.add_muscle(again, wc.joints[1])
    assert wc.muscles[0][:2] == [0, 1]
    assert len(wc.get_walker().joints) == 2 and first == again


@pytest.mark.parametrize("call,reason", [
    (lambda wc: wc.add_joint(float("nan"), 0), "joint 2 x must be a finite number"),
    (lambda wc: wc.add_joint(0, "1"), "joint 2 y must be a number"),
    (lambda wc: wc.add_muscle((7.0, 7.0), wc.joints[0]), "is not a joint returned by add_joint"),
    (lambda wc: wc.add_muscle(wc.joints[0], wc.joints[1], float("inf")), "muscle 0 amplitude must be a finite"),
])
def test_bad_calls_are_invalid_with_a_reason(call, reason):
    wc = walker_creator()
    wc.add_joint(0, 0)
    wc.add_joint(1, 0)
    with pytest.raises(InvalidProgram, match=reason):
        call(wc)


def test_runaway_loops_stop_at_a_limit():
    wc = walker_creator()
    a, b = wc.add_joint(0, 0), wc.add_joint(1, 0)
    with pytest.raises(InvalidProgram, match="too many add_muscle calls"):
        for _ in range(10**6):
            wc.add_muscle(a, b, 1.0, 0.0)
    with pytest.raises(InvalidProgram, match="too many add_joint calls"):
        for k in range(10**6):
            wc.add_joint(k, 0)


def test_query_cppn_offers_the_pairs_openelm_does():
    wc = walker_creator()
    offered = []
    grid = query_cppn(wc, 3, 2, 1.0, lambda *p: offered.append(p) or True, lambda *p: 1.0, lambda *p: 0.0)
    assert sorted(grid) == [(x, y) for x in range(3) for y in range(2)]
    assert grid[2, 1] == (2 * SCALE, -1 * SCALE)
    # x1 <= x2 and y1 <= y2, skipping x1 == y1 and x2 == y2 (so (1, 0)-(1, 0) is offered, (0, 0)-(0, 0) not)
    assert (1, 0, 1, 0) in offered and (0, 0, 0, 0) not in offered and (0, 0, 1, 1) not in offered
    assert all(x1 <= x2 and y1 <= y2 for x1, y1, x2, y2 in offered)
    assert len(wc.get_walker().muscles) == sum(1 for x1, y1, x2, y2 in offered if (x1, y1) != (x2, y2))


def test_family_programs_score_the_same_in_the_sandbox(tmp_path):
    from elm.sandbox import EnvironmentSpec, SandboxLimits
    from elm.types import EvalRequest, EvalStatus
    from sandbox import make_sandbox

    spec = EnvironmentSpec("environments.sodarace.Sodarace", {})
    sources = [FAMILIES["square"], FAMILIES["cppn"], RADIAL_CLOSED]
    with make_sandbox("process", env=spec, limits=SandboxLimits(timeout_s=30), workers=1,
                      runtime_dir=str(tmp_path / "rt")) as sb:
        results = sb.evaluate([EvalRequest(id=i, source=s) for i, s in enumerate(sources)])
    env = Sodarace()
    for source, result in zip(sources[:2], results):
        assert result.status is EvalStatus.OK, result.error
        assert result.fitness == env.evaluate_local(source).fitness
    assert results[2].status is EvalStatus.INVALID and "0.005 m" in results[2].error
