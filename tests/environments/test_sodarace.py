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
from environments.sodarace import kernel
from environments.sodarace.physics import TERRAINS, _ground, simulate, sustained_travel
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


def passive_bodies(seed: int, count: int) -> list[tuple[str, dict]]:
    """(kind, walker JSON) of bodies without a gait: towers, ladders, leaning stacks and piles.

    Towers and leaning stacks: levels of two joints, braced by diagonals or not (then they fold),
    some with amplitude-0 muscles as diagonals; a leaning stack shifts each level sideways (up to
    60 % of its width), a ladder (0.15-0.3 m wide, up to 3.9 m high) leans as a whole. Piles:
    random joints each joined to its three nearest. Candidates that break a rule are dropped.
    """
    rng = np.random.default_rng(seed)
    kinds = ("tower", "ladder", "leaning stack", "pile")
    bodies = []
    for k in range(count):
        kind = kinds[k % 4]
        joints, bones, springs = [], [], []
        if kind == "pile":
            xy = rng.uniform(0.0, 1.5, size=(int(rng.integers(6, 30)), 2))
            for p in xy.tolist():
                if all(math.dist(p, q) >= 0.08 for q in joints):
                    joints.append(p)
            for i in range(1, len(joints)):
                near = np.argsort([math.dist(joints[i], joints[j]) for j in range(i)])[:3]
                bones += [[int(j), i] for j in near]
        else:
            levels = int(rng.integers(3, 12))
            width = float(rng.uniform(0.15, 0.3) if kind == "ladder" else rng.uniform(0.15, 1.0))
            rise = float(rng.uniform(1.5, 3.9)) / levels
            shift = float(rng.uniform(-0.6, 0.6)) * width if kind == "leaning stack" else 0.0
            tilt = float(rng.uniform(-0.4, 0.4)) if kind == "ladder" else 0.0
            braced = rng.random() < 0.7
            for level in range(levels + 1):
                x = level * (shift + rise * tilt)
                joints += [[x, level * rise], [x + width, level * rise]]
                left, right = 2 * level, 2 * level + 1
                bones.append([left, right])
                if level:
                    bones += [[left - 2, left], [right - 2, right]]
                    if braced:
                        bones.append([left - 2, right])
                    elif rng.random() < 0.5:
                        springs.append([left - 2, right, 0.0, float(rng.random())])
        body = {"joints": joints, "bones": bones, "muscles": springs}
        try:
            check_walker(body)
        except InvalidProgram:
            continue
        bodies.append((kind, body))
    return bodies


def test_passive_bodies_of_every_shape_score_about_zero(env):
    """Towers that topple, stacks that fold, ladders that fall flat move, but only once: ~0
    (under 0.1 m; the seeds travel 0.7-8 m)."""
    bodies = passive_bodies(1, 96)
    assert len(bodies) >= 70 and {kind for kind, _ in bodies} == {"tower", "ladder", "leaning stack", "pile"}
    scores, moved = [], 0
    for kind, body in bodies:
        ev = env.score(body)
        scores.append((ev.fitness, kind))
        moved += abs(ev.info["net_displacement_m"]) > 0.3
        assert ev.info["max_bone_strain"] < 0.01  # towers crashing down included
    assert max(scores)[0] < 0.1, sorted(scores)[-3:]
    assert moved >= 5  # the family does fall over: a net-displacement fitness would reward these


def test_fitness_does_not_depend_on_where_the_walker_is_built(env):
    source = inchworm(0.3)
    shifted = source.replace("w = Walker()", "w = Walker()\n    dx, dy = 123.25, 40.5").replace(
        "w.add_joint(", "w.add_joint(dx + ").replace(", 0.0)", ", dy + 0.0)").replace(", 0.4)", ", dy + 0.4)")
    out = walker_output(shifted)
    assert min(x for x, _ in out["joints"]) > 100
    assert env.score(out).fitness == pytest.approx(env.evaluate_local(source).fitness, rel=1e-3)


def test_fitness_is_the_steady_progress_per_muscle_cycle_times_the_cycles(env):
    walker = check_walker(walker_output(inchworm(0.3)))
    rollout = simulate(walker, duration_s=10.0, record=True)
    from environments.sodarace.walker import walker_mass

    mass = walker_mass(walker)
    com = rollout.trajectory[:, :, 0] @ mass / mass.sum()
    assert rollout.trajectory.shape == (501, 4, 2)
    assert com[0] == pytest.approx(0.0, abs=1e-12)  # placed with its centre of mass at x = 0
    assert rollout.trajectory[0, :, 1].min() == pytest.approx(0.0, abs=1e-12)  # lowest joint on the ground
    # 18 cycles of 25 steps after 50 steps of settling; each cycle's mean centre of mass
    means = com[51:].reshape(18, 25).mean(axis=1)
    d = np.diff(means)
    assert rollout.cycle_progress == pytest.approx(tuple(d), abs=1e-9)
    assert rollout.distance == pytest.approx(abs(np.median(d)) * 18, abs=1e-9)
    assert rollout.net_displacement == pytest.approx(means[-1] - means[0], abs=1e-9)
    assert rollout.distance > 1.0 and abs(rollout.net_displacement) > 1.0


def test_fitness_ignores_where_in_its_cycle_the_run_stops(env):
    """Runs ending at different phases of the gait score alike: the score counts whole cycles only."""
    scores = [Sodarace(duration_s=10.0 + extra).evaluate_local(inchworm(0.3)).fitness
              for extra in (0.0, 0.1, 0.2, 0.3, 0.4)]
    assert max(scores) - min(scores) < 0.05 * max(scores)


def test_sustained_travel_ignores_a_one_time_fall_and_counts_a_steady_pace():
    settle, cycle = 50, 25
    steps = np.arange(501)
    # topples, wobbles
    fall = np.where(steps > 200, 1.5, 0.0) + 0.2 * np.exp(-np.abs(steps - 200) / 50) * np.sin(steps * 0.7)
    steady = 0.1 * np.maximum(steps - settle, 0) / cycle + 0.3 * np.sin(2 * np.pi * steps / cycle + 1.0)
    assert sustained_travel(fall, settle_steps=settle)[0] < 0.05
    fitness, net, d = sustained_travel(steady, settle_steps=settle)
    assert fitness == pytest.approx(0.1 * 18) and net == pytest.approx(0.1 * 17) and len(d) == 17
    with pytest.raises(ValueError, match="at least 2 muscle cycles"):
        sustained_travel(steady[:80], settle_steps=settle)


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
    ("too many muscles", lambda: {**_grid(20, 0.1), "muscles": [[0, 1, 0.1, 0.0]] * 513}, "513 muscles"),
    ("too many bones", lambda: {**_grid(20, 0.1), "bones": [[0, 1]] * 513}, "513 bones"),
    ("amplitude too big", _with(muscles=[[0, 2, 0.51, 0.0]]), r"amplitude 0.51 is outside"),
    ("joints too close", _with(joints=[[0, 0], [0.3, 0], [0.6, 0], [0.6, 0.0049]]),
     "joints 2 and 3 are 0.0049 m apart"),
    ("joints close but not too close", _with(joints=[[0, 0], [0.3, 0], [0.6, 0], [0.6, 0.0051]]), None),
    ("same place", _with(joints=[[0, 0], [0.3, 0], [0.3, 0], [0.9, 0]]), "0 m apart"),
    ("too wide", _with(joints=[[0, 0], [1.5, 0], [3.0, 0], [4.5, 0]]), "4.5 m wide"),
    ("too high", _with(joints=[[0, 0], [0, 1.5], [0, 3.0], [0, 4.01]]), "4.01 m high"),
    ("disconnected", _with(bones=[[0, 1], [2, 3]]), "joint 2 is not connected to joint 0"),
    ("crowded joint", lambda: {"joints": [[0.0, 0.0]] + [[math.cos(k / 8), math.sin(k / 8)] for k in range(49)],
                               "bones": [[0, k] for k in range(1, 50)], "muscles": []}, "joint 0 has 49"),
    ("too heavy", lambda: {"joints": [[0, 0.12 * i] for i in range(32)] + [[3.9, 0.12 * i] for i in range(32)],
                           "bones": [[i, 32 + (i + k) % 32] for i in range(32) for k in range(16)],
                           "muscles": []}, "kg"),
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
    with pytest.raises(InvalidProgram, match="too many bones: at most 512"):
        for _ in range(10**6):
            w.add_bone(0, 1)
    with pytest.raises(InvalidProgram, match="too many muscles: at most 512"):
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


def random_walkers(seed: int, count: int) -> list[dict]:
    """Dense, clustered, lopsided walkers within the rules: joints on a jittered lattice, the nearest
    pairs joined (up to the per-joint limit), alternately by muscles of random amplitude and phase and
    by bones. Candidates that break a rule are dropped."""
    rng = np.random.default_rng(seed)
    walkers = []
    for _ in range(count):
        n = int(rng.integers(3, 40))
        spacing = float(rng.choice([0.06, 0.12, 0.2]))  # from crowded to spread out
        cells = rng.permutation(49)[:n]
        xy = np.stack([cells % 7, cells // 7], axis=1) * spacing + rng.random((n, 2)) * 0.1 * spacing
        d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        pairs, degree = [], np.zeros(n, int)
        for i, j in sorted(((a, b) for a in range(n) for b in range(a + 1, n)), key=lambda p: d[p]):
            if d[i, j] > 3 * spacing:
                break
            if degree[i] < 10 and degree[j] < 10:
                pairs.append((i, j))
                degree[[i, j]] += 1
        muscles = [[i, j, float(rng.random() * 0.5), float(rng.random())] for i, j in pairs[::2]][:64]
        out = {"joints": xy.tolist(), "bones": [[i, j] for i, j in pairs[1::2]][:128], "muscles": muscles}
        try:
            check_walker(out)
        except InvalidProgram:
            continue
        walkers.append(out)
    return walkers


def test_random_walkers_within_the_rules_never_blow_up():
    env = Sodarace()
    walkers = random_walkers(5, 25)
    assert len(walkers) >= 15
    for out in walkers:
        ev = env.score(out)
        assert math.isfinite(ev.fitness) and ev.fitness < 100


def test_bones_hold_their_length_over_whole_runs_of_every_seed_and_random_walkers():
    """Worst |length / rest length - 1| of any bone at any step stays under 1 %: the seeds on every
    terrain, and crowded random walkers (bones of 6-20 cm, muscles of up to 50 % pulling across them)."""
    seeds = [simulate(check_walker(walker_output(source)), terrain=terrain).max_bone_strain
             for terrain in sorted(TERRAINS) for source in SEEDS.values()]
    assert max(seeds) < 0.01, seeds
    random = [simulate(check_walker(out)).max_bone_strain for out in random_walkers(11, 40)]
    assert len(random) >= 25
    assert max(random) < 0.01, sorted(random)[-3:]


def test_strain_is_what_the_trajectory_shows():
    walker = check_walker(walker_output(SEEDS["cppn"]))
    rollout = simulate(walker, record=True)
    traj, nb = rollout.trajectory, walker.n_bones
    lengths = np.linalg.norm(traj[:, walker.b[:nb]] - traj[:, walker.a[:nb]], axis=2)
    assert np.abs(lengths / walker.rest_length[:nb] - 1).max() == pytest.approx(rollout.max_bone_strain, rel=1e-9)
    # bones hold the body up: its height after settling is the height as built, give or take a bend
    assert rollout.max_bone_strain > 0
    height = traj[:, :, 1].max(axis=1) - traj[:, :, 1].min(axis=1)
    assert height[50] > 0.98 * height[0]
    wheel = simulate(check_walker(walker_output(SEEDS["wheel"])), record=True).trajectory
    assert np.ptp(wheel[50, :, 1]) > 0.85 * np.ptp(wheel[0, :, 1])  # soft bones made it 0.2 of it
    for legged in ("runner", "galloper"):  # they stand on their legs (soft bones: 0.4-0.5 of their height)
        traj = simulate(check_walker(walker_output(SEEDS[legged])), record=True).trajectory
        assert np.ptp(traj[50, :, 1]) > 0.9 * np.ptp(traj[0, :, 1]), legged


def test_interpreted_kernel_gives_the_compiled_kernels_numbers():
    """Without numba (NUMBA_DISABLE_JIT=1 runs the same code interpreted) every number is the same."""
    assert kernel.COMPILED  # numba is a declared dependency
    code = ("from environments import Sodarace\nfrom environments.sodarace import kernel\n"
            "print(kernel.COMPILED)\nenv = Sodarace(terrain='hills', duration_s=2.0)\n"
            "print([env.evaluate_local(s).fitness.hex() for s in env.seed_programs()[:3]])")
    results = []
    for extra in ({}, {"NUMBA_DISABLE_JIT": "1"}):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **extra}
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(proc.stdout.split())
    assert results[0][0] == "True" and results[1][0] == "False"
    assert results[0][1:] == results[1][1:]


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
