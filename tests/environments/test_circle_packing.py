"""CirclePacking: seeds, exact verifier, descriptors, construction from config."""

from __future__ import annotations

import numpy as np
import pytest

from elm import EnvironmentSpec, InvalidProgram
from elm.environment import roundtrip_json
from environments import CirclePacking

N = 26


@pytest.fixture(scope="module")
def env() -> CirclePacking:
    return CirclePacking()


def known_packing() -> tuple[list[list[float]], list[float]]:
    """26 circles with dyadic coordinates, so every check below is exact in float64.

    * 16 circles of radius 1/8 on a 4 x 4 grid (12 of them touch the walls,
      neighbours touch each other);
    * 9 circles of radius 3/64 in the interior gaps of the grid;
    * 1 circle of radius 1/32 at (1/4, 1/32): it touches the bottom wall and,
      by the 3-4-5 triangle (3/32, 4/32, 5/32), touches the grid circles at
      (1/8, 1/8) and (3/8, 1/8) exactly.

    Sum of radii = 2 + 27/64 + 1/32 = 2.453125 exactly.
    """
    centers = [[(2 * j + 1) / 8, (2 * i + 1) / 8] for i in range(4) for j in range(4)]
    radii = [1 / 8] * 16
    centers += [[j / 4, i / 4] for i in range(1, 4) for j in range(1, 4)]
    radii += [3 / 64] * 9
    centers.append([1 / 4, 1 / 32])
    radii.append(1 / 32)
    return centers, radii


KNOWN_FITNESS = 2.453125


def output(centers, radii) -> dict:
    return {"centers": centers, "radii": radii}


def modified(change) -> dict:
    centers, radii = known_packing()
    change(centers, radii)
    return output(centers, radii)


# ------------------------------------------------------------------ seeds


def test_every_seed_is_valid_with_room_to_improve(env):
    seeds = env.seed_programs()
    assert 3 <= len(seeds) <= 4
    space = env.descriptor_space
    for source in seeds:
        ev = env.evaluate_local(source)
        assert 1.0 < ev.fitness < 2.5  # published best for n = 26 is 2.6359
        assert len(ev.descriptor) == 2
        for value, lo, hi in zip(ev.descriptor, space.lower, space.upper):
            assert lo <= value <= hi
        assert ev.info["n"] == N and ev.info["min_radius"] > 0


def test_seeds_are_distinct_readable_programs(env):
    seeds = env.seed_programs()
    assert len(set(seeds)) == len(seeds)
    for source in seeds:
        assert "def pack()" in source and "import numpy as np" in source
        assert 20 <= len(source.splitlines()) <= 60


def test_seed_descriptors_spread_over_the_grid(env):
    space = env.descriptor_space
    cells = set()
    for source in env.seed_programs():
        d = env.evaluate_local(source).descriptor
        cell = tuple(
            min(b - 1, int((v - lo) / (hi - lo) * b))
            for v, lo, hi, b in zip(d, space.lower, space.upper, space.bins)
        )
        cells.add(cell)
    assert len(cells) == len(env.seed_programs())  # every seed in its own 12 x 12 cell


@pytest.mark.parametrize("n", [2, 3, 7, 30])
def test_seeds_are_valid_for_other_n(n):
    env = CirclePacking(n=n)
    for source in env.seed_programs():
        assert f"n = {n}" in source
        ev = env.evaluate_local(source)
        assert ev.info["n"] == n and ev.fitness > 0


def test_evaluation_is_deterministic(env):
    for source in env.seed_programs():
        a, b = env.evaluate_local(source), env.evaluate_local(source)
        assert a == b


# ------------------------------------------------------------ exact verifier


def test_known_packing_has_exact_fitness_and_descriptors(env):
    centers, radii = known_packing()
    ev = env.score(output(centers, radii))
    assert ev.fitness == KNOWN_FITNESS
    r = np.array(radii)
    assert ev.descriptor[0] == pytest.approx(float(np.std(r) / np.mean(r)), rel=1e-12)
    assert ev.descriptor[1] == 13 / 26  # 12 outer grid circles + the bottom circle touch a wall
    assert ev.info["min_pair_gap"] == 0.0  # touching pairs are allowed
    assert ev.info["min_wall_gap"] == 0.0  # touching the wall is allowed


def test_known_packing_through_a_program(env):
    source = (
        "import numpy as np\n\n"
        "def pack():\n"
        "    c = [[(2 * j + 1) / 8, (2 * i + 1) / 8] for i in range(4) for j in range(4)]\n"
        "    c += [[j / 4, i / 4] for i in range(1, 4) for j in range(1, 4)]\n"
        "    c.append([1 / 4, 1 / 32])\n"
        "    r = [1 / 8] * 16 + [3 / 64] * 9 + [1 / 32]\n"
        "    return np.array(c), np.array(r)\n"
    )
    assert env.evaluate_local(source).fitness == KNOWN_FITNESS


def _one_ulp_overlap(centers, radii):
    """Grow circle 5 (interior, centre (3/8, 3/8)) until r_5 + r_6 is one ulp above d_56 = 1/4."""
    d = 0.25
    assert centers[6][0] - centers[5][0] == d and radii[5] + radii[6] == d
    r = radii[5]
    while r + radii[6] <= d:
        r = float(np.nextafter(r, 1.0))
    assert r + radii[6] == np.nextafter(d, 1.0)  # exactly one ulp of the computed sum
    radii[5] = r


def _one_ulp_closer(centers, radii):
    """Move circle 6 one ulp towards circle 5: distance 1/4 - 2**-53 < r_5 + r_6 = 1/4."""
    centers[6][0] = float(np.nextafter(centers[6][0], 0.0))


def _set(index, key, value):
    def change(centers, radii):
        if key == "r":
            radii[index] = value
        else:
            centers[index][key] = value

    return change


VERIFIER_TABLE = [
    # (case id, change to the known packing, None if valid else a substring of the reason)
    ("unchanged", lambda c, r: None, None),
    ("radius shrunk a little", _set(5, "r", 0.124), None),
    ("overlap by one ulp", _one_ulp_overlap, "overlap"),
    ("centres one ulp too close", _one_ulp_closer, "overlap"),
    ("outside left by 1e-15", _set(0, 0, 0.125 - 1e-15), "left edge"),
    ("outside top by 1e-15", _set(15, 1, 0.875 + 1e-15), "top edge"),
    # x + r is rounded once: x one ulp right of 7/8 gives exactly 1 + 2**-53, a tie that rounds
    # to 1.0 (valid); two ulps give 1 + 2**-52 > 1
    ("outside right by one ulp of 1.0", _set(15, 0, 0.875 + 2**-52), "right edge"),
    ("touching circle one ulp below the floor", _set(25, 1, float(np.nextafter(1 / 32, 0.0))), "bottom edge"),
    ("negative radius", _set(3, "r", -0.01), "radii[3]"),
    ("zero radius", _set(3, "r", 0.0), "not positive"),
    ("nan radius (float)", _set(3, "r", float("nan")), "radii[3]"),
    ("nan radius (to_jsonable marker)", _set(3, "r", "nan"), "radii[3]"),
    ("inf radius", _set(3, "r", float("inf")), "radii[3]"),
    ("inf centre (marker)", _set(4, 0, "inf"), "centers[4][0]"),
    ("-inf centre (float)", _set(4, 1, float("-inf")), "centers[4][1]"),
    ("string number", _set(3, "r", "0.1"), "radii[3]"),
    ("bool radius", _set(3, "r", True), "radii[3]"),
    ("None centre", _set(2, 0, None), "centers[2][0]"),
    ("nested radius", _set(3, "r", [0.1]), "radii[3]"),
    ("nested centre value", _set(2, 1, [0.5]), "centers[2][1]"),
    ("huge int", _set(2, 0, 10**400), "centers[2][0]"),
    ("one circle missing", lambda c, r: (c.pop(), r.pop()), "entries, expected 26"),
    ("one radius too many", lambda c, r: r.append(0.01), "radii has 27 entries"),
    ("centre with three coordinates", lambda c, r: c[7].append(0.5), "centers[7]"),
    ("centre as a bare number", lambda c, r: c.__setitem__(7, 0.5), "centers[7]"),
]


@pytest.mark.parametrize("case,change,reason", VERIFIER_TABLE, ids=[row[0] for row in VERIFIER_TABLE])
def test_verifier_table(env, case, change, reason):
    out = modified(change)
    if reason is None:
        assert env.score(out).fitness > 2.4
    else:
        with pytest.raises(InvalidProgram, match=reason.replace("[", r"\[").replace("]", r"\]")):
            env.score(out)


def test_overlap_reason_names_the_pair_and_amount(env):
    out = modified(_set(5, "r", 0.125 + 1e-6))  # circle 5 now overlaps its 4 grid neighbours by 1e-6
    with pytest.raises(InvalidProgram) as info:
        env.score(out)
    message = str(info.value)
    assert "circles" in message and "5" in message and "overlap by 1e-06" in message
    assert "4 overlapping pair(s)" in message


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [[0.5, 0.5]],
        {"centers": [[0.5, 0.5]] * N},
        {"radii": [0.1] * N},
        {"centers": "garbage", "radii": [0.1] * N},
        {"centers": [[0.5, 0.5]] * N, "radii": 0.1},
    ],
)
def test_malformed_outputs_are_invalid(env, bad):
    with pytest.raises(InvalidProgram):
        env.score(bad)


def test_two_circles_in_a_small_instance():
    env = CirclePacking(n=2)
    ev = env.score(output([[0.25, 0.5], [0.75, 0.5]], [0.25, 0.25]))
    assert ev.fitness == 0.5 and ev.descriptor == (0.0, 1.0)
    # 0.25 + 2**-53 is the next float after 0.25 ... + 0.25 = nextafter(0.5): one ulp of overlap
    with pytest.raises(InvalidProgram, match="overlap"):
        env.score(output([[0.25, 0.5], [0.75, 0.5]], [0.25, 0.25 + 2**-53]))


# ----------------------------------------------------------------- programs


def test_program_without_pack_is_invalid(env):
    with pytest.raises(InvalidProgram, match="'pack'"):
        env.evaluate_local("def solve():\n    return [], []\n")


def test_pack_must_return_a_pair(env):
    with pytest.raises(InvalidProgram, match="pair"):
        env.evaluate_local("import numpy as np\ndef pack():\n    return np.zeros((26, 3))\n")


def test_nan_from_a_program_is_rejected_after_the_json_round_trip(env):
    source = (
        "import numpy as np\n"
        "def pack():\n"
        "    c = np.full((26, 2), 0.5)\n"
        "    r = np.full(26, np.nan)\n"
        "    return c, r\n"
    )
    raw = env.execute(source)
    assert raw["radii"][0] == "nan"  # to_jsonable's marker survives JSON
    with pytest.raises(InvalidProgram, match="radii\\[0\\]"):
        env.score(roundtrip_json(raw))


def test_execute_returns_plain_json_data(env):
    raw = env.execute(env.seed_programs()[0])
    assert set(raw) == {"centers", "radii"}
    assert roundtrip_json(raw) == raw
    assert len(raw["centers"]) == N and all(len(c) == 2 for c in raw["centers"])


# ------------------------------------------------------------ configuration


def test_descriptor_space(env):
    space = env.descriptor_space
    assert space.names == ("radius_cv", "border_fraction")
    assert space.lower == (0.0, 0.0) and space.upper == (1.0, 1.0)
    assert space.bins == (12, 12)


def test_radius_cv_is_clipped_to_its_upper_bound():
    env = CirclePacking(n=3)
    # one big circle and two tiny ones: std/mean = sqrt(2) * ... > 1
    out = output([[0.5, 0.5], [0.01, 0.99], [0.99, 0.01]], [0.4, 1e-4, 1e-4])
    r = np.array([0.4, 1e-4, 1e-4])
    assert np.std(r) / np.mean(r) > 1
    assert env.score(out).descriptor[0] == 1.0


@pytest.mark.parametrize("n,error", [(1, ValueError), (0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_constructor_validates_n(n, error):
    with pytest.raises(error, match="n must be"):
        CirclePacking(n=n)


def test_rebuilt_from_config():
    spec = EnvironmentSpec.from_config({"_target_": "environments.circle_packing.CirclePacking", "n": 26})
    env = spec.build()
    assert isinstance(env, CirclePacking) and env.n == 26
    assert env.name == "circle_packing" and env.entry_point == "pack"


def test_task_context(env):
    task = env.task()
    assert task.name == "circle_packing" and task.entry_point == "pack"
    assert task.signature == "def pack() -> tuple[np.ndarray, np.ndarray]:"
    for phrase in ("26", "unit square", "sum of their radii", "(26, 2)", "tolerance", "2.636"):
        assert phrase in task.description
    assert "def pack()" in task.api_doc
