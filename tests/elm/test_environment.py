"""Environment.evaluate_local runs the program in a child and scores here, as the sandbox does."""

from __future__ import annotations

import json
import math

import pytest

from elm.environment import InvalidProgram, ProgramError
from environments.circle_packing import CirclePacking

# Patches applied by the program at import time, in whatever process executes it.
PATCH_FSUM = "import math\nmath.fsum = lambda values, *a: 1e6\n"
PATCH_JSON = (
    "import json\n_loads = json.loads\n"
    "json.loads = lambda s, *a, **k: {**_loads(s), 'radii': [r / 2 for r in _loads(s)['radii']]}\n"
)


@pytest.fixture(scope="module")
def env():
    return CirclePacking()


def test_patching_the_scoring_at_import_time_changes_nothing(env):
    seed = env.seed_programs()[0]
    clean = env.evaluate_local(seed).fitness
    assert 0 < clean < 1e6
    assert env.evaluate_local(PATCH_FSUM + seed).fitness == clean
    assert env.evaluate_local(PATCH_JSON + seed).fitness == clean


def test_the_in_process_mode_is_fooled_which_is_why_it_is_named_so(env):
    seed = env.seed_programs()[0]
    clean = env.evaluate_in_process(seed).fitness
    assert clean == env.evaluate_local(seed).fitness
    real_fsum, real_loads = math.fsum, json.loads
    try:
        assert env.evaluate_in_process(PATCH_FSUM + seed).fitness == 1e6
        math.fsum = real_fsum
        assert env.evaluate_in_process(PATCH_JSON + seed).fitness == pytest.approx(clean / 2)
    finally:
        math.fsum, json.loads = real_fsum, real_loads


def test_failures_in_the_child_are_reported(env):
    with pytest.raises(InvalidProgram, match="'pack'"):
        env.evaluate_local("def solve():\n    return [], []\n")
    with pytest.raises(ProgramError, match="ZeroDivisionError"):
        env.evaluate_local("def pack():\n    return 1 / 0\n")
    with pytest.raises(ProgramError, match="exited with code 3"):
        env.evaluate_local("import os\ndef pack():\n    os._exit(3)\n")
    with pytest.raises(ProgramError, match="SIGKILL"):
        env.evaluate_local("import os, signal\ndef pack():\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(TimeoutError, match="0.5 s"):
        env.evaluate_local("def pack():\n    while True:\n        pass\n", timeout_s=0.5)
