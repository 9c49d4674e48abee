"""Sodarace: walker API, validity rules, physics (locomotion, terrains, determinism), seeds."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from elm import InvalidProgram
from elm.environment import roundtrip_json
from environments import Sodarace, Walker
from environments.sodarace.physics import TERRAINS, _ground, simulate
from environments.sodarace.seeds import SEEDS
from environments.sodarace.walker import RULES, check_walker

ROOT = Path(__file__).resolve().parents[2]

# A known gait: a triangle whose two legs (muscles) swing a quarter cycle apart, so one foot
# always grips while the other slides. Its passive twin has the same body with amplitude 0.
INCHWORM = '''
from environments.sodarace import Walker


def make_walker():
    w = Walker()
    back = w.add_joint(0.0, 0.0)
    top = w.add_joint(0.5, 0.4)
    front = w.add_joint(1.0, 0.0)
    middle = w.add_joint(0.5, 0.0)
    w.add_bone(back, top)
    w.add_bone(top, front)
    w.add_bone(top, middle)
    w.add_muscle(back, middle, amplitude=AMP, phase=0.0)
    w.add_muscle(middle, front, amplitude=AMP, phase=0.25)
    return w
'''


def inchworm(amplitude: float) -> str:
    return INCHWORM.replace("AMP", repr(amplitude))


@pytest.fixture(scope="module")
def env() -> Sodarace:
    return Sodarace()


def walker_output(source: str) -> dict:
    return roundtrip_json(Sodarace().execute(source))


# ------------------------------------------------------------------ fitness = locomotion


def test_walker_without_muscles_scores_about_zero_and_a_gait_scores_more(env):
    still = env.evaluate_local(inchworm(0.0))
    moving = env.evaluate_local(inchworm(0.3))
    assert still.fitness < 1e-6
    assert moving.fitness > 1.0  # metres in 9 s of muscle activity
    assert still.descriptor == moving.descriptor  # same body


@pytest.mark.parametrize("name", list(SEEDS))
def test_every_seed_moves_and_its_passive_twin_stays_put(env, name):
    passive = re.sub(r"amplitude=[^,)]*", "amplitude=0.0", SEEDS[name])
    assert env.evaluate_local(passive).fitness < 0.1  # settling wobble only
    assert env.evaluate_local(SEEDS[name]).fitness > 0.05


def test_fitness_does_not_depend_on_where_the_walker_is_built(env):
    source = inchworm(0.3)
    shifted = source.replace("w = Walker()", "w = Walker()\n    dx, dy = 123.25, 40.5").replace(
        "w.add_joint(", "w.add_joint(dx + ").replace(", 0.0)", ", dy + 0.0)").replace(", 0.4)", ", dy + 0.4)")
    out = walker_output(shifted)
    assert min(x for x, _ in out["joints"]) > 100
    assert env.score(out).fitness == pytest.approx(env.evaluate_local(source).fitness, rel=1e-3)


def test_fitness_is_the_centre_of_mass_displacement_over_the_muscle_phase(env):
    walker = check_walker(walker_output(inchworm(0.3)))
    rollout = simulate(walker, duration_s=10.0, record=True)
    from environments.sodarace.walker import walker_mass

    mass = walker_mass(walker)
    com = rollout.trajectory[:, :, 0] @ mass / mass.sum()
    assert rollout.trajectory.shape == (501, 4, 2)
    assert com[0] == pytest.approx(0.0, abs=1e-12)  # placed with its centre of mass at x = 0
    assert rollout.trajectory[0, :, 1].min() == pytest.approx(0.0, abs=1e-12)  # lowest joint on the ground
    assert rollout.distance == pytest.approx(abs(com[-1] - com[50]), abs=1e-9)  # after 1 s of settling


def test_longer_runs_travel_further(env):
    short = Sodarace(duration_s=5.0).evaluate_local(inchworm(0.3)).fitness
    long = Sodarace(duration_s=20.0).evaluate_local(inchworm(0.3)).fitness
    assert long > 2.5 * short > 0


@pytest.mark.parametrize("terrain", sorted(TERRAINS))
def test_terrains_hold_every_joint_on_or_above_the_ground(terrain):
    walker = check_walker(walker_output(SEEDS["cppn"]))
    rollout = simulate(walker, terrain=terrain, duration_s=5.0, record=True)
    x, y = rollout.trajectory[..., 0], rollout.trajectory[..., 1]
    h, _ = _ground(terrain, x)
    # exact on flat and straight ground; on curved hills the push-out along the local normal
    # leaves a second-order residue
    assert (y - h).min() > (-1e-9 if terrain != "hills" else -1e-4)
    assert rollout.distance > 0.2
    ev = Sodarace(terrain=terrain).evaluate_local(SEEDS["cppn"])
    assert ev.info["terrain"] == terrain and ev.fitness > 0.2


def test_terrain_shapes():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0])
    h, slope = _ground("hills", x)
    assert h.tolist() == pytest.approx([0.2, 0.2, 0.0, 0.1, 0.2, 0.0, 0.2])  # troughs every 2 m from 0
    assert slope[2] == 0.0 and slope[4] == 0.0 and slope[3] == pytest.approx(0.3)
    assert np.allclose(_ground("hills", -x)[0], h)  # mirror-symmetric about the start
    h, slope = _ground("uphill", x)
    assert h.tolist() == pytest.approx((0.15 * np.abs(x)).tolist()) and slope[0] == -0.15


def test_uphill_is_harder_than_flat_for_the_known_gait():
    flat = Sodarace().evaluate_local(inchworm(0.3)).fitness
    uphill = Sodarace(terrain="uphill").evaluate_local(inchworm(0.3)).fitness
    assert uphill < flat


# ------------------------------------------------------------------ determinism


def test_evaluation_is_deterministic(env):
    for source in SEEDS.values():
        assert env.evaluate_local(source) == env.evaluate_local(source)


def test_results_are_bit_identical_whatever_blas_kernel_or_simd_numpy_picks():
    """The host and a gVisor sandbox may report different CPU features to OpenBLAS and numpy."""
    code = ("from environments import Sodarace\nenv = Sodarace(terrain='hills')\n"
            "print([env.evaluate_local(s).fitness.hex() for s in env.seed_programs()])")
    results = set()
    for extra in ({}, {"OPENBLAS_CORETYPE": "Sandybridge"}, {"OPENBLAS_CORETYPE": "Prescott"},
                  {"NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512_SKX AVX2 FMA3"}):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **extra}
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.add(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 1


# ------------------------------------------------------------------ seeds, descriptors, API


def test_six_named_seeds_are_valid_in_distinct_cells(env):
    assert list(SEEDS) == ["square", "radial", "wheel", "runner", "galloper", "cppn"]
    assert env.seed_programs() == list(SEEDS.values())
    space = env.descriptor_space
    assert space.names == ("height", "width", "mass") and space.bins == (12, 12, 12)
    cells = set()
    for source in env.seed_programs():
        assert "from environments.sodarace import Walker" in source and "def make_walker()" in source
        ev = env.evaluate_local(source)
        for v, lo, hi in zip(ev.descriptor, space.lower, space.upper):
            assert lo <= v <= hi
        cells.add(tuple(min(b - 1, int((v - lo) / (hi - lo) * b))
                        for v, lo, hi, b in zip(ev.descriptor, space.lower, space.upper, space.bins)))
    assert len(cells) == len(SEEDS)


def test_descriptors_are_the_built_walkers_height_width_and_mass(env):
    ev = env.evaluate_local(inchworm(0.3))
    height, width, mass = ev.descriptor
    assert height == pytest.approx(0.4) and width == pytest.approx(1.0)
    lengths = 2 * math.hypot(0.5, 0.4) + 0.4 + 0.5 + 0.5  # 3 bones + 2 muscles, 1 kg/m
    assert mass == pytest.approx(4 * RULES.joint_mass + lengths)
    assert ev.info["joints"] == 4 and ev.info["bones"] == 3 and ev.info["muscles"] == 2


def test_the_documented_example_builds_a_valid_walker():
    import environments.sodarace.walker as walker_module

    doc = walker_module.__doc__
    example = doc[doc.index("    from environments"):doc.index("The builder checks")]
    source = "\n".join(line[4:] for line in example.splitlines())
    ev = Sodarace().evaluate_local(source)
    assert ev.info["joints"] == 3 and ev.info["muscles"] == 1


def test_task_documents_the_api_and_rules_for_prompts(env):
    task = env.task()
    assert task.entry_point == "make_walker" and "make_walker" in task.signature
    for text in ("add_joint", "add_bone", "add_muscle", "amplitude", "phase",
                 "from environments.sodarace import Walker"):
        assert text in task.api_doc
    for number in (RULES.max_joints, RULES.max_muscles, RULES.max_connections_per_joint, RULES.min_joint_distance,
                   RULES.max_amplitude):
        assert str(number) in task.api_doc
    assert "distance" in task.description and "muscle" in task.description


def test_walker_builder_returns_indices_and_plain_data():
    w = Walker()
    assert [w.add_joint(0, 0), w.add_joint(1.0, 0.0), w.add_joint(np.float64(0.5), 1)] == [0, 1, 2]
    assert w.add_bone(0, 1) == 0
    assert w.add_muscle(1, 2, amplitude=0.2, phase=0.75) == 1
    assert json.loads(json.dumps(w.to_dict())) == {
        "joints": [[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]], "bones": [[0, 1]], "muscles": [[1, 2, 0.2, 0.75]]}
    with pytest.raises(TypeError):
        w.add_muscle(0, 2, 0.2, 0.5)  # amplitude and phase are keyword-only


@pytest.mark.parametrize("call,reason", [
    (lambda w: w.add_joint(float("nan"), 0), "joint 3 x must be a finite number"),
    (lambda w: w.add_joint(0, "1"), "joint 3 y must be a finite number"),
    (lambda w: w.add_bone(0, 7), "refers to joint 7"),
    (lambda w: w.add_bone(1, 1), "connects joint 1 to itself"),
    (lambda w: w.add_bone(0, 1.0), "must be a joint index"),
    (lambda w: w.add_muscle(0, 1, amplitude=0.6, phase=0), r"amplitude 0.6 is outside \[0, 0.5\]"),
    (lambda w: w.add_muscle(0, 1, amplitude=-0.1, phase=0), "outside"),
    (lambda w: w.add_muscle(0, 1, amplitude=0.1, phase=float("inf")), "phase must be a finite number"),
])
def test_builder_rejects_bad_calls_with_a_reason(call, reason):
    w = Walker()
    for x in range(3):
        w.add_joint(x, 0)
    with pytest.raises(InvalidProgram, match=reason):
        call(w)


def _grid(n: int, spacing: float = 0.3) -> dict:
    joints = [[spacing * i, 0.0] for i in range(n)]
    return {"joints": joints, "bones": [[i, i + 1] for i in range(n - 1)], "muscles": []}


def _with(**changes):
    def make():
        out = _grid(4)
        out.update(changes)
        return out
    return make


RULE_TABLE = [
    ("valid chain", _with(), None),
    ("one joint", lambda: {"joints": [[0, 0]], "bones": [], "muscles": []}, "1 joints; between 2 and 64"),
    ("too many joints", lambda: _grid(65, 0.05), "65 joints"),
    ("no connections", _with(bones=[]), "no bones or muscles"),
    ("too many muscles", lambda: {**_grid(20, 0.1), "muscles": [[0, 1, 0.1, 0.0]] * 65}, "65 muscles"),
    ("too many bones", lambda: {**_grid(20, 0.1), "bones": [[0, 1]] * 129}, "129 bones"),
    ("amplitude too big", _with(muscles=[[0, 2, 0.51, 0.0]]), r"amplitude 0.51 is outside"),
    ("joints too close", _with(joints=[[0, 0], [0.3, 0], [0.6, 0], [0.6, 0.049]]), "joints 2 and 3 are 0.049 m apart"),
    ("same place", _with(joints=[[0, 0], [0.3, 0], [0.3, 0], [0.9, 0]]), "0 m apart"),
    ("too wide", _with(joints=[[0, 0], [1.5, 0], [3.0, 0], [4.5, 0]]), "4.5 m wide"),
    ("too high", _with(joints=[[0, 0], [0, 1.5], [0, 3.0], [0, 4.01]]), "4.01 m high"),
    ("disconnected", _with(bones=[[0, 1], [2, 3]]), "joint 2 is not connected to joint 0"),
    ("crowded joint", lambda: {"joints": [[0.0, 0.0]] + [[math.cos(k / 2), math.sin(k / 2)] for k in range(11)],
                               "bones": [[0, k] for k in range(1, 12)], "muscles": []}, "joint 0 has 11"),
    ("too heavy", lambda: {"joints": [[0, 0], [3, 0], [3, 3], [0, 3]],
                           "bones": [[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [1, 3]] * 3, "muscles": []}, "kg"),
    ("bad index", _with(bones=[[0, 9]]), "refers to joint 9"),
    ("self loop", _with(bones=[[2, 2]]), "connects joint 2 to itself"),
    ("float index", _with(bones=[[0, 1.0]]), "must be a joint index"),
    ("nan marker", _with(joints=[[0, 0], ["nan", 0], [0.6, 0], [0.9, 0]]), "joint 1 x must be a finite number"),
    ("bool coordinate", _with(joints=[[0, 0], [True, 0], [0.6, 0], [0.9, 0]]), "joint 1 x"),
    ("huge coordinate", _with(joints=[[0, 0], [0.3, 0], [0.6, 0], [2000, 0]]), "beyond"),
    ("joint not a pair", _with(joints=[[0, 0], [0.3], [0.6, 0], [0.9, 0]]), "joint 1 must be an"),
    ("muscle of width 3", _with(muscles=[[0, 2, 0.1]]), "muscle 0 must be"),
    ("missing key", lambda: {"joints": [[0, 0], [1, 0]], "bones": [[0, 1]]}, "no 'muscles'"),
    ("not a dict", lambda: [[0, 0], [1, 0]], "must be a walker"),
]


@pytest.mark.parametrize("case,make,reason", RULE_TABLE, ids=[row[0] for row in RULE_TABLE])
def test_rule_table(env, case, make, reason):
    if reason is None:
        assert env.score(make()).fitness >= 0
    else:
        with pytest.raises(InvalidProgram, match=reason):
            env.score(make())


def test_builder_stops_runaway_loops_at_the_limits():
    w = Walker()
    w.add_joint(0, 0)
    w.add_joint(1, 0)
    with pytest.raises(InvalidProgram, match="too many bones: at most 128"):
        for _ in range(10**6):
            w.add_bone(0, 1)
    with pytest.raises(InvalidProgram, match="too many muscles: at most 64"):
        for _ in range(10**6):
            w.add_muscle(0, 1, amplitude=0.1, phase=0.0)
    with pytest.raises(InvalidProgram, match="too many joints: at most 64"):
        for k in range(10**6):
            w.add_joint(k, 0)


def test_rollout_returns_joint_positions_for_plotting(env):
    traj = env.rollout(inchworm(0.3))
    assert traj.shape == (501, 4, 2) and np.isfinite(traj).all()


def test_program_returning_something_else_is_invalid(env):
    with pytest.raises(InvalidProgram, match="must return a Walker"):
        env.execute("def make_walker():\n    return {'joints': [[0, 0], [1, 0]], 'bones': [[0, 1]], 'muscles': []}\n")


def test_random_walkers_within_the_rules_never_blow_up():
    """Dense, clustered, lopsided walkers at the per-joint limit stay finite for 10 s."""
    rng = np.random.default_rng(5)
    env = Sodarace()
    scored = 0
    for _trial in range(25):
        n = int(rng.integers(3, 40))
        spacing = float(rng.choice([0.06, 0.12, 0.2]))  # from crowded to spread out
        cells = rng.permutation(49)[:n]
        xy = np.stack([cells % 7, cells // 7], axis=1) * spacing + rng.random((n, 2)) * 0.1 * spacing
        d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        pairs, degree = [], np.zeros(n, int)
        for i, j in sorted(((a, b) for a in range(n) for b in range(a + 1, n)), key=lambda p: d[p]):
            if d[i, j] > 3 * spacing:
                break
            if degree[i] < RULES.max_connections_per_joint and degree[j] < RULES.max_connections_per_joint:
                pairs.append((i, j))
                degree[[i, j]] += 1
        muscles = [[i, j, float(rng.random() * 0.5), float(rng.random())] for i, j in pairs[::2]][:64]
        out = {"joints": xy.tolist(), "bones": [[i, j] for i, j in pairs[1::2]][:128], "muscles": muscles}
        try:
            check_walker(out)
        except InvalidProgram:
            continue
        ev = env.score(out)
        assert math.isfinite(ev.fitness) and ev.fitness < 100
        scored += 1
    assert scored >= 15


def test_import_has_no_side_effects():
    code = ("import sys, os\nsys.argv = ['prog', '--no-such-flag', '-x']\nbefore = set(os.listdir('.'))\n"
            "import environments.sodarace, environments\nassert set(os.listdir('.')) == before\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("kwargs,error", [
    ({"terrain": "moon"}, "unknown terrain 'moon'"),
    ({"duration_s": 1.5}, "between 2 and 600"),
    ({"duration_s": "10"}, "must be a number"),
])
def test_bad_constructor_arguments_name_the_fix(kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        Sodarace(**kwargs)
