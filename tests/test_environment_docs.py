"""Every Python example of docs/environments.md runs, and the environments it defines do what the
text says (tests/test_custom_env.py runs the first one, my_env.py, end to end)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from elm import Environment, InvalidProgram
from elm.archive import GridArchive

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "environments.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOCS, flags=re.S)


def _run(block: str) -> dict:
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(block, "<docs/environments.md>", "exec"), namespace)  # our own docs: trusted code
    return namespace


def _block(first_line: str) -> str:
    found = [b for b in BLOCKS if b.startswith(first_line)]
    assert len(found) == 1, f"docs/environments.md: one ```python block must start with {first_line!r}"
    return found[0]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0][:50] for b in BLOCKS])
def test_every_python_example_runs_and_its_environments_evaluate_their_seeds(block):
    namespace = _run(block)
    envs = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, Environment)
            and v.__module__ == "docs_example"]
    for cls in envs:
        env = cls()
        space = env.descriptor_space
        for source in env.seed_programs():
            ev = env.evaluate_local(source)  # validated as a run does: raises on anything invalid
            assert all(lo <= d <= hi for d, lo, hi in zip(ev.descriptor, space.lower, space.upper))
            assert ev.fitness >= cls.qd_offset, "qd_offset must be at or below every valid fitness"
        task = env.task()
        assert task.entry_point == cls.entry_point and task.description


def test_the_forgery_example_shows_a_forged_count():
    namespace = _run(_block("# why a count kept in the candidate's process"))
    assert namespace["measure"](namespace["forging_sort"]) == ([1, 3, 4, 5], 0)


@pytest.fixture(scope="module")
def sorting_network() -> Environment:
    return _run(_block("# sorting_network.py"))["SortingNetwork"]()


def test_the_sorting_network_measures_in_score_what_the_program_returns(sorting_network):
    env = sorting_network
    bubble, odd_even = (env.evaluate_local(s) for s in env.seed_programs())
    assert (bubble.fitness, bubble.descriptor) == (-15.0, (9.0,))
    assert (odd_even.fitness, odd_even.descriptor) == (-15.0, (6.0,))
    # a program that claims a small network but hands over one that does not sort is rejected in score
    with pytest.raises(InvalidProgram, match="does not sort"):
        env.evaluate_local("def network():\n    return [(0, 1)]\n")
    with pytest.raises(InvalidProgram, match="pairs"):
        env.evaluate_local("def network():\n    return [(1, 0)] * 40\n")
    task = env.task()
    assert task.signature.startswith("def network(") and "0 <= i < j < 6" in task.api_doc


def test_an_integer_descriptor_gets_one_cell_per_integer(sorting_network):
    """The documented bounds: half a unit outside the smallest and largest values, one bin per integer."""
    space = sorting_network.descriptor_space
    archive = GridArchive(space=space)
    depths = np.arange(1, 16, dtype=float)[:, None]
    assert archive.index_of(depths).tolist() == list(range(15))
    assert archive.index_of(depths + 0.49).tolist() == list(range(15))  # a float near k stays in k's cell
