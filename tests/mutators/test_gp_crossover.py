"""GPCrossoverMutator: homologous function and assignment swaps between two parents."""

from __future__ import annotations

import ast

import pytest

from elm.types import MutationStatus, Parent
from environments.circle_packing import CirclePacking
from mutators.gp_crossover import GPCrossoverMutator

TASK = CirclePacking().task()

A = '''import numpy as np


def helper(x):
    return x + 1


def pack():
    n = 3
    scale, shift = 1.0, 0.0
    total = 0
    for i in range(n):
        total += helper(i)
    return total * scale + shift
'''

B = '''import numpy as np


def helper(x):
    return 2 * x


def pack():
    n = 3
    scale, shift = 0.5, 0.25
    total = 0
    for i in range(n):
        total += i
    return total
'''


def parent(pid: int, source: str) -> Parent:
    return Parent(id=pid, source=source, fitness=0.0, descriptor=(0.0, 0.0))


def functions(source: str) -> dict[str, str]:
    return {n.name: ast.unparse(n) for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def test_function_swap_takes_the_second_parents_function_whole():
    child = GPCrossoverMutator(p_function=1.0, p_statement=0.0).mutate(
        parents=[[parent(1, A), parent(2, B)]], task=TASK, seed=0)[0]
    assert child.status is MutationStatus.OK and child.parent_ids == (1, 2)
    got, a, b = functions(child.source), functions(A), functions(B)
    # exactly one of the two differing functions came from B, the other is A's
    assert sorted(name for name in got if got[name] == b[name] != a[name]) in (["helper"], ["pack"])
    assert sum(got[name] == a[name] for name in got) == 1
    assert child.meta["edits"][0].startswith("function ") and child.meta["edits"][0].endswith(" from 2")


def test_statement_swap_replaces_one_assignment_with_the_same_target():
    m = GPCrossoverMutator(p_function=0.0, p_statement=1.0)
    children = m.mutate(parents=[[parent(1, A), parent(2, B)]] * 20, task=TASK, seed=5)
    seen = set()
    for child in children:
        assert child.status is MutationStatus.OK
        a_lines = ast.unparse(ast.parse(A)).splitlines()
        c_lines = child.source.splitlines()
        assert len(a_lines) == len(c_lines)  # one statement for one statement
        changed = [(x.strip(), y.strip()) for x, y in zip(a_lines, c_lines) if x != y]
        assert len(changed) == 1
        old, new = changed[0]
        assert old.split("=")[0] == new.split("=")[0]  # the same target
        seen.add(new)
    # both differing assignments of pack() are reachable; `total += helper(i)` (augmented) is only
    # swapped for an augmented assignment of the same target
    assert seen == {"scale, shift = (0.5, 0.25)", "total += i"}


def test_an_assignment_is_never_swapped_for_another_kind():
    first = "def f():\n    x = 1\n    x += 2\n    return x\n"
    second = "def f():\n    x = 1\n    x = 5\n    return x\n"
    children = GPCrossoverMutator(p_function=0.0, p_statement=1.0).mutate(
        parents=[[parent(1, first), parent(2, second)]] * 10, task=TASK, seed=1)
    # `x = 1` -> `x = 5` is the only differing pair of the same kind; `x += 2` stays
    assert {c.source for c in children} == {"def f():\n    x = 5\n    x += 2\n    return x"}


@pytest.mark.parametrize("group", [
    [parent(1, A)],                                   # one parent: nothing to take
    [parent(1, A), parent(2, A)],                     # identical programs
    [parent(1, A), parent(2, "def other():\n    return 1\n")],  # no function in common
    [parent(1, A), parent(2, "def pack(:\n")],       # the second does not parse
])
def test_nothing_to_take_is_a_no_op_with_the_first_parent(group):
    child = GPCrossoverMutator().mutate(parents=[group], task=TASK, seed=0)[0]
    assert child.status is MutationStatus.NO_OP
    assert child.source == A
    assert child.parent_ids == tuple(p.id for p in group)


def test_a_first_parent_that_does_not_parse_is_malformed():
    child = GPCrossoverMutator().mutate(parents=[[parent(1, "def pack(:\n"), parent(2, B)]], task=TASK, seed=0)[0]
    assert child.status is MutationStatus.MALFORMED and child.source is None
    assert "first parent does not parse" in child.meta["error"]


def test_reproducible_from_the_seed_and_varied_across_seeds():
    m = GPCrossoverMutator()
    groups = [[parent(1, A), parent(2, B)]] * 12
    one = [c.source for c in m.mutate(parents=groups, task=TASK, seed=7)]
    assert one == [c.source for c in m.mutate(parents=groups, task=TASK, seed=7)]
    assert one != [c.source for c in m.mutate(parents=groups, task=TASK, seed=8)]
    assert len(set(one)) > 1


def test_children_of_the_seed_programs_are_valid_packings():
    env = CirclePacking()
    seeds = list(env.seed_programs())
    groups = [[parent(i, seeds[i % 4]), parent(10 + i, seeds[(i + 1) % 4])] for i in range(8)]
    for child in GPCrossoverMutator().mutate(parents=groups, task=TASK, seed=2):
        assert child.status is MutationStatus.OK
        assert env.score(env.execute(child.source)).fitness > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"p_function": -1.0}, "p_function must be a finite number >= 0"),
    ({"p_statement": float("nan")}, "p_statement must be a finite number >= 0"),
    ({"p_function": 0.0, "p_statement": 0.0}, "at least one of p_function and p_statement"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPCrossoverMutator(**kwargs)


def test_an_empty_group_is_refused():
    with pytest.raises(ValueError, match="parent group 0 is empty"):
        GPCrossoverMutator().mutate(parents=[[]], task=TASK, seed=0)


def test_a_run_with_crossover_beside_gp_stores_two_parents_per_crossover_child(ray_session, tmp_path):
    import json
    import sqlite3

    from elm.config import compose
    from elm.runner import run

    cfg = compose(["mutator=gp_with_crossover", "mutator.components.crossover.weight=0.5",
                   "sandbox._target_=tests.elm.inprocess.InProcessSandbox", "loop.progress=false",
                   "ray.evaluator_num_cpus=0", "loop.batch_size=8", "budget.evaluations=160", "seed=2"])
    summary = run(cfg, run_dir=tmp_path / "r")
    assert summary.evaluations == 160
    conn = sqlite3.connect(tmp_path / "r" / "run.db")
    rows = conn.execute("SELECT parent_ids, status, archive_status, mutation_status FROM evaluations "
                        "WHERE mutator = 'crossover'").fetchall()  # the component's name
    conn.close()
    assert rows
    assert all(len(json.loads(parents)) == 2 for parents, *_ in rows)
    ok = [r for r in rows if r[3] == "ok"]
    assert ok and sum(r[1] == "ok" for r in ok) >= len(ok) // 2  # children of valid parents are mostly valid
    assert any(r[2] in ("new_cell", "improved") for r in ok)  # and some enter the archive


def test_a_swap_that_would_give_back_the_second_parent_is_not_made():
    # the parents differ only in helper(): taking it whole would rebuild the second parent, which the
    # run has already evaluated; the one assignment swap inside helper() gives the same program too
    first = "def helper():\n    a = 1\n    return a\n\n\ndef pack():\n    return helper()\n"
    second = "def helper():\n    a = 2\n    return a\n\n\ndef pack():\n    return helper()\n"
    children = GPCrossoverMutator().mutate(parents=[[parent(1, first), parent(2, second)]] * 5, task=TASK, seed=0)
    assert {c.status for c in children} == {MutationStatus.NO_OP}
    assert {c.source for c in children} == {first}
    # with a second difference, a swap of either part alone is a new program
    third = second.replace("return helper()", "return 2 * helper()")
    children = GPCrossoverMutator().mutate(parents=[[parent(1, first), parent(3, third)]] * 10, task=TASK, seed=0)
    assert {c.status for c in children} == {MutationStatus.OK}
    assert ast.unparse(ast.parse(third)) not in {c.source for c in children}
