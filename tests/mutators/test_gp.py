"""GPMutator: determinism, always-parsing children, edit kinds and their guards, batches."""

from __future__ import annotations

import ast
import time
import warnings

import numpy as np
import pytest

from elm import Parent, Proposal, TaskContext
from environments import CirclePacking
from mutators import GPMutator

TASK = TaskContext(name="test", description="test task", entry_point="f")

#: exercises every statement kind the mutator walks: loops, if/else, while, try, with, nested def
RICH_PROGRAM = '''"""Module docstring."""
import math


def helper(x):
    """Helper docstring."""
    return x * 2.5 + 1


def f(n=3):
    total = 0.0
    label = "a" + "b"
    for i in range(n):
        if i % 2 == 0:
            total += helper(i) / 3
        else:
            total -= 0.5 * i
    k = 0
    while k < 4:
        k += 1
    try:
        total = total - 1.0
    except ZeroDivisionError:
        total = 0.0
    with open(__file__) as fh:
        pass
    def inner(y):
        return y <= 10
    total = total * 1.25
    return total if inner(total) else -total
'''


def parent(source: str, pid: int = 1) -> Parent:
    return Parent(id=pid, source=source, fitness=0.0, descriptor=(0.0, 0.0))


def groups(source: str, count: int, first_id: int = 0) -> list[list[Parent]]:
    return [[parent(source, first_id + i)] for i in range(count)]


def edits_of(proposals: list[Proposal]) -> list[str]:
    return [e for p in proposals for e in p.meta.get("edits", [])]


@pytest.fixture(scope="module")
def env() -> CirclePacking:
    return CirclePacking()


# ------------------------------------------------------------ determinism


def test_same_seed_same_children_different_seed_different_children():
    gp = GPMutator()
    a = gp.mutate(parents=groups(RICH_PROGRAM, 20), task=TASK, seed=7)
    b = GPMutator().mutate(parents=groups(RICH_PROGRAM, 20), task=TASK, seed=7)
    c = gp.mutate(parents=groups(RICH_PROGRAM, 20), task=TASK, seed=8)
    assert a == b
    assert [p.source for p in a] != [p.source for p in c]
    assert len({p.source for p in a}) > 10  # children of one batch differ from each other too


def test_children_always_parse_and_differ_from_the_parent(env):
    gp = GPMutator(max_edits=5)
    sources = [RICH_PROGRAM, *env.seed_programs()]
    for k, source in enumerate(sources):
        baseline = ast.unparse(ast.parse(source))
        for p in gp.mutate(parents=groups(source, 60), task=TASK, seed=k):
            assert p.status == "ok" and p.mutator == "gp"
            ast.parse(p.source)
            assert p.source != baseline
            assert 1 <= len(p.meta["edits"]) <= 5


# --------------------------------------------------- circle-packing children


def test_most_children_of_the_circle_packing_seeds_stay_valid(env):
    seeds = env.seed_programs()
    parents = [[parent(seeds[i % len(seeds)], i)] for i in range(160)]
    proposals = GPMutator().mutate(parents=parents, task=env.task(), seed=0)
    valid, fitnesses = 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # children may divide by zero etc.
        for p in proposals:
            try:
                fitnesses.append(env.evaluate_local(p.source).fitness)
                valid += 1
            except Exception:  # noqa: BLE001 (InvalidProgram, or a crash of the child)
                pass
    rate = valid / len(proposals)
    print(f"\nGP valid-child rate over {len(proposals)} children of the circle-packing seeds: {rate:.3f}")
    assert rate >= 0.5
    assert len(set(fitnesses)) > 20  # valid children are genuinely different packings


def test_mutating_a_seed_is_fast(env):
    gp = GPMutator()
    source = env.seed_programs()[0]
    gp.mutate(parents=groups(source, 10), task=TASK, seed=0)  # warm-up
    start = time.perf_counter()
    gp.mutate(parents=groups(source, 200), task=TASK, seed=1)
    per_child_ms = (time.perf_counter() - start) / 200 * 1e3
    print(f"\nGP: {per_child_ms:.2f} ms per child of a {len(source.splitlines())}-line program")
    assert per_child_ms < 20  # about 2 ms on a laptop; generous for loaded CI machines


# ------------------------------------------------------------- edit kinds


def test_every_edit_kind_occurs():
    edits = edits_of(GPMutator().mutate(parents=groups(RICH_PROGRAM, 200), task=TASK, seed=3))
    kinds = {e.split()[0] for e in edits}
    assert kinds == {"const", "op", "dup", "del", "grow"}
    assert all("line" in e for e in edits)


def test_constant_edits_keep_types_and_signs():
    source = "def f():\n    return [range(5), range(1), 0, 0.0, 2.5, 1e-09, 1000]\n"
    gp = GPMutator(p_constant=1, p_operator=0, p_duplicate=0, p_delete=0, p_grow=0, max_edits=1)
    proposals = gp.mutate(parents=groups(source, 300), task=TASK, seed=0)
    originals = [0, 0.0, 2.5, 1e-09, 1000]
    for p in proposals:
        ret = ast.parse(p.source).body[0].body[0].value
        r5, r1 = (call.args[0].value for call in ret.elts[:2])
        assert isinstance(r5, int) and r5 >= 1 and isinstance(r1, int) and r1 >= 1
        for node, old in zip(ret.elts[2:], originals):
            assert isinstance(node, ast.Constant)  # never turned into a unary minus
            assert type(node.value) is type(old) and node.value >= 0
    changed = [e for e in edits_of(proposals) if e.startswith("const 2.5->")]
    new_values = [float(e.split("->")[1].split()[0]) for e in changed]
    assert len(new_values) > 20
    assert 1.5 < min(new_values) < 2.5 < max(new_values) < 3.5
    assert 0.05 < np.std(new_values) / 2.5 < 0.2  # constant_sigma = 0.1 relative noise
    assert all(len(repr(v)) <= 8 for v in new_values)  # rounded to 6 significant digits


def test_axis_keyword_is_not_perturbed():
    source = "import numpy as np\n\ndef f(a):\n    return np.sum(a, axis=1)\n"
    gp = GPMutator(p_constant=1, p_operator=0, p_duplicate=0, p_delete=0, p_grow=0)
    [p] = gp.mutate(parents=[[parent(source)]], task=TASK, seed=0)
    assert p.status == "no_op" and p.source == source


def test_operator_swaps():
    source = "def f(a, b):\n    return (a + b, a * b, a < b, a >= b, a == b)\n"
    gp = GPMutator(p_constant=0, p_operator=1, p_duplicate=0, p_delete=0, p_grow=0, max_edits=1)
    seen = set()
    for p in gp.mutate(parents=groups(source, 60), task=TASK, seed=0):
        seen.add(p.meta["edits"][0].split(" at ")[0])
    assert seen == {"op + -> -", "op * -> /", "op < -> >", "op >= -> <=", "op == -> !="}


def test_string_concatenation_is_not_swapped():
    source = 'def f(a):\n    return "x" + a\n'
    gp = GPMutator(p_constant=0, p_operator=1, p_duplicate=0, p_delete=0, p_grow=0)
    [p] = gp.mutate(parents=[[parent(source)]], task=TASK, seed=0)
    assert p.status == "no_op"


def test_duplicate_inserts_a_copy_after_the_statement():
    source = "def f(x):\n    x = x * 2\n    return x\n"
    gp = GPMutator(p_constant=0, p_operator=0, p_duplicate=1, p_delete=0, p_grow=0, max_edits=1)
    [p] = gp.mutate(parents=[[parent(source)]], task=TASK, seed=0)
    assert p.source == "def f(x):\n    x = x * 2\n    x = x * 2\n    return x"
    assert p.meta["edits"] == ["dup line 2"]


def test_delete_never_removes_returns_defs_or_needed_first_bindings():
    gp = GPMutator(p_constant=0, p_operator=0, p_duplicate=0, p_delete=1, p_grow=0, max_edits=3)
    parent_tree = ast.parse(RICH_PROGRAM)
    n_returns = sum(isinstance(n, ast.Return) for n in ast.walk(parent_tree))
    n_defs = sum(isinstance(n, ast.FunctionDef) for n in ast.walk(parent_tree))
    for p in gp.mutate(parents=groups(RICH_PROGRAM, 100), task=TASK, seed=0):
        tree = ast.parse(p.source)
        assert sum(isinstance(n, ast.Return) for n in ast.walk(tree)) == n_returns
        assert sum(isinstance(n, ast.FunctionDef) for n in ast.walk(tree)) == n_defs
        f = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "f")
        assert isinstance(f.body[-1], ast.Return)
        assert "total = 0.0" in p.source  # first binding of a name read later


def test_delete_only_touches_rebindings_and_side_effects():
    source = "def f():\n    x = 1\n    y = x + 1\n    x = 2\n    return x + y\n"
    gp = GPMutator(p_constant=0, p_operator=0, p_duplicate=0, p_delete=1, p_grow=0, max_edits=1)
    for p in gp.mutate(parents=groups(source, 10), task=TASK, seed=0):
        assert p.meta["edits"] == ["del line 4"]
        assert p.source == "def f():\n    x = 1\n    y = x + 1\n    return x + y"


def test_delete_fills_an_emptied_block_with_pass():
    source = "def f(x):\n    if x:\n        print(x)\n    return x\n"
    gp = GPMutator(p_constant=0, p_operator=0, p_duplicate=0, p_delete=1, p_grow=0, max_edits=1)
    outcomes = {p.source for p in gp.mutate(parents=groups(source, 20), task=TASK, seed=0)}
    assert outcomes == {
        "def f(x):\n    if x:\n        pass\n    return x",  # deleted the print
        "def f(x):\n    return x",  # deleted the whole if
    }


# ------------------------------------------------------------ odd parents


def test_malformed_parent():
    [p] = GPMutator().mutate(parents=[[parent("def pack(:\n    return 1\n", pid=42)]], task=TASK, seed=0)
    assert p.status == "malformed" and p.source is None
    assert p.parent_ids == (42,) and p.mutator == "gp"
    assert "does not parse" in p.meta["error"]


def test_nothing_to_edit_is_a_no_op():
    source = "NAME = 'circle'\n"
    [p] = GPMutator().mutate(parents=[[parent(source, pid=5)]], task=TASK, seed=0)
    assert p.status == "no_op" and p.source == source and p.parent_ids == (5,)


# ------------------------------------------------------------------ batches


def test_batch_returns_one_proposal_per_group_in_order(env):
    seeds = env.seed_programs()
    batch = [
        [parent(seeds[0], 10), parent(seeds[1], 99)],  # only the first parent of a group is used
        [parent("def broken(:", 11)],
        [parent(seeds[2], 12)],
        [parent("X = 'nothing to edit'\n", 13)],
        [parent(seeds[3], 14), parent(seeds[0], 98)],
    ]
    proposals = GPMutator(name="gp-baseline").mutate(parents=batch, task=env.task(), seed=1)
    assert [p.parent_ids for p in proposals] == [(10,), (11,), (12,), (13,), (14,)]
    assert [p.status for p in proposals] == ["ok", "malformed", "ok", "no_op", "ok"]
    assert all(p.mutator == "gp-baseline" for p in proposals)
    assert GPMutator().mutate(parents=[], task=env.task(), seed=1) == []


def test_empty_parent_group_is_an_error():
    with pytest.raises(ValueError, match="parent group 1 is empty"):
        GPMutator().mutate(parents=[[parent("def f():\n    return 1\n")], []], task=TASK, seed=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"constant_sigma": 0}, "constant_sigma"),
        ({"constant_sigma": float("nan")}, "constant_sigma"),
        ({"p_delete": -0.1}, "p_delete"),
        ({"p_constant": 0, "p_operator": 0, "p_duplicate": 0, "p_delete": 0, "p_grow": 0}, "at least one"),
        ({"max_edits": 0}, "max_edits"),
        ({"max_edits": 2.0}, "max_edits"),
        ({"name": ""}, "name"),
        ({"p_crossover": -0.1}, "p_crossover"),
        ({"p_crossover": 1.5}, "p_crossover"),
        ({"p_crossover": True}, "p_crossover"),
        ({"p_crossover": float("nan")}, "p_crossover"),
        ({"p_grow": -1}, "p_grow"),
        ({"p_grow": float("inf")}, "p_grow"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPMutator(**kwargs)


def test_name_defaults_and_override():
    assert GPMutator().name == "gp" and GPMutator.name == "gp"
    assert GPMutator(name="gp2").name == "gp2" and GPMutator.name == "gp"


# ------------------------------------------------------------ crossover edit

FIRST = """def helper(x):
    return x + 1


def f():
    a, b = 1.0, 2.0
    return helper(a) * b
"""

SECOND = """def helper(x):
    return 3 * x


def f():
    a, b = 0.5, 4.0
    return helper(a) * b
"""


def test_without_crossover_one_parent_per_child_and_the_same_children():
    plain, zero = GPMutator(), GPMutator(p_crossover=0.0)
    assert plain.parents_per_child == zero.parents_per_child == 1
    a = plain.mutate(parents=groups(RICH_PROGRAM, 20), task=TASK, seed=5)
    b = zero.mutate(parents=groups(RICH_PROGRAM, 20), task=TASK, seed=5)
    assert [p.source for p in a] == [p.source for p in b]


def test_crossover_children_take_one_part_of_the_second_parent():
    mutator = GPMutator(p_crossover=1.0)
    assert mutator.parents_per_child == 2 and GPMutator.parents_per_child == 1  # an instance setting
    children = mutator.mutate(parents=[[parent(FIRST, 1), parent(SECOND, 2)]] * 30, task=TASK, seed=0)
    assert all(c.status.value == "ok" and c.parent_ids == (1, 2) and c.mutator == "gp" for c in children)
    assert all(c.source not in (ast.unparse(ast.parse(FIRST)), ast.unparse(ast.parse(SECOND))) for c in children)
    edits = {e.split(" from ")[0] for e in edits_of(children)}
    assert edits == {"function helper", "function f", "line 6"}  # both swap kinds, all three sites


def test_a_pair_with_nothing_to_swap_gets_edits_instead():
    children = GPMutator(p_crossover=1.0).mutate(
        parents=[[parent(FIRST, 1), parent(FIRST, 2)], [parent(FIRST, 3)]], task=TASK, seed=0)
    assert [c.parent_ids for c in children] == [(1,), (3,)]
    assert all(c.status.value == "ok" for c in children)
    assert all(e.split()[0] in ("const", "op", "dup", "del", "grow") for e in edits_of(children))


def test_share_of_crossover_children_follows_p_crossover():
    children = GPMutator(p_crossover=0.25).mutate(
        parents=[[parent(FIRST, 1), parent(SECOND, 2)]] * 400, task=TASK, seed=3)
    share = sum(len(c.parent_ids) == 2 for c in children) / len(children)
    assert 0.18 < share < 0.32


def test_a_run_with_the_crossover_edit_is_one_lane_and_reproducible(ray_session, tmp_path):
    import json
    import sqlite3

    from elm.config import compose
    from elm.runner import run

    def rows(path):
        conn = sqlite3.connect(path / "run.db")
        try:
            return conn.execute("SELECT id, parent_ids, source, status, fitness, mutator, info FROM evaluations "
                                "ORDER BY id").fetchall()
        finally:
            conn.close()

    overrides = ["mutator=gp", "mutator.p_crossover=0.3", "sandbox._target_=tests.elm.inprocess.InProcessSandbox",
                 "loop.progress=false", "ray.evaluator_num_cpus=0", "loop.batch_size=8", "budget.evaluations=120",
                 "seed=4"]
    run(compose(overrides), run_dir=tmp_path / "a")
    run(compose(overrides), run_dir=tmp_path / "b")
    first = rows(tmp_path / "a")
    assert first == rows(tmp_path / "b")
    children = [r for r in first if r[5] == "gp"]
    # the store names the parents each child used: both for a crossover child, one for an edited copy
    two = [r for r in children if len(json.loads(r[1])) == 2]
    one = [r for r in children if len(json.loads(r[1])) == 1]
    assert two and one and len(two) + len(one) == len(children)
    assert all(" from " in json.loads(r[6])["mutation"]["edits"][0] for r in two if r[6])
    assert sum(r[3] == "ok" for r in two) >= len(two) // 2


# ---------------------------------------------------------------- grow edit

GROW_ONLY = dict(p_constant=0, p_operator=0, p_duplicate=0, p_delete=0, p_grow=1, max_edits=1)


def grown(source: str, count: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """(edit description, child source) of ``count`` one-edit grow children of ``source``."""
    children = GPMutator(**GROW_ONLY).mutate(parents=groups(source, count), task=TASK, seed=seed)
    return [(edit, c.source) for c in children for edit in c.meta["edits"]]


def test_without_grow_the_edits_are_drawn_as_before_the_grow_edit_existed(monkeypatch):
    import mutators.gp as gp_module

    assert "grow" not in {e.split()[0] for e in edits_of(GPMutator(p_grow=0).mutate(
        parents=groups(RICH_PROGRAM, 200), task=TASK, seed=3))}
    without = GPMutator(p_grow=0).mutate(parents=groups(RICH_PROGRAM, 100), task=TASK, seed=11)
    # the mutator as it was before the grow kind existed: four kinds, four weights
    monkeypatch.setattr(gp_module, "_EDIT_KINDS", gp_module._EDIT_KINDS[:4])
    four = GPMutator(p_grow=0)
    four._weights = four._weights[:4]
    assert four.mutate(parents=groups(RICH_PROGRAM, 100), task=TASK, seed=11) == without


def test_grow_is_on_by_default_at_a_third_of_the_edits():
    edits = edits_of(GPMutator().mutate(parents=groups(RICH_PROGRAM, 300), task=TASK, seed=4))
    share = sum(e.startswith("grow ") for e in edits) / len(edits)
    assert 0.2 < share < 0.45  # weight 0.5 beside the other four's 1.0, where every kind has sites


def test_grow_wraps_a_terminal_in_each_form_using_names_in_scope():
    source = "def f(a, b):\n    x = a * 2.0\n    return x - b\n"
    children = grown(source)
    assert len(children) == 200
    forms = set()
    for edit, child in children:
        assert edit.startswith("grow ")
        before, after = edit[len("grow "):].split(" at line ")[0].split(" -> ")
        assert after.startswith(before) and before in {"a", "2.0", "x", "b"}
        new = ast.parse(after, mode="eval").body
        names = {n.id for n in ast.walk(new) if isinstance(n, ast.Name)}
        assert names <= {"a", "b", "x"}
        if edit.endswith("at line 2"):
            assert "x" not in names  # x is bound on line 2: not yet in scope there
        assert any(isinstance(n, ast.Constant) and isinstance(n.value, float) and n.value > 0
                   for n in ast.walk(new) if n is not new.left)
        forms.add("relative" if after.startswith(f"{before} * (1.0") else
                  "parity" if "% 2" in after else "product" if after.count("*") == 2 else
                  "variable" if len(names) > (before in "abx") else "constant")
        compile(child, "<child>", "exec")
    assert forms == {"constant", "variable", "product", "parity", "relative"}


def test_grow_uses_comprehension_targets_and_only_numeric_names():
    source = "def f(n, label):\n    return [i * 0.5 for i in range(n)], label\n"
    names = set()
    for edit, _ in grown(source):
        after = edit.split(" -> ")[1].split(" at line ")[0]
        names |= {n.id for n in ast.walk(ast.parse(after, mode="eval")) if isinstance(n, ast.Name)}
    # n only appears inside range(...) and label never in arithmetic: neither is offered
    assert names == {"i"}


def test_grow_keeps_a_nested_function_and_its_outer_function_apart():
    source = ("def f(a):\n"
              "    def g(b):\n"
              "        y = b * 3.0\n"
              "        return y + 1.0\n"
              "    z = a * 2.0\n"
              "    return g(z) - a\n")
    sites = {}
    for edit, child in grown(source, count=300):
        before, rest = edit[len("grow "):].split(" -> ")
        after, line = rest.split(" at line ")
        names = {n.id for n in ast.walk(ast.parse(after, mode="eval")) if isinstance(n, ast.Name)}
        # g's sites see g's names only, f's sites f's only: y (bound in g) used in f is a NameError
        assert names <= ({"b", "y"} if int(line) in (3, 4) else {"a", "z"}), edit
        sites.setdefault((before, line), 0)
        sites[before, line] += 1
        namespace = {}
        exec(compile(child, "<child>", "exec"), namespace)
        namespace["f"](1.5)  # runs: no name out of its scope
    # each terminal is one site, drawn about equally often (a nested function's terminals used to be
    # sites of the outer function too, so they were drawn twice as often, half of them with its names)
    assert set(sites) == {("b", "3"), ("3.0", "3"), ("y", "4"), ("1.0", "4"), ("a", "5"), ("2.0", "5"),
                          ("a", "6")}
    assert max(sites.values()) < 3 * min(sites.values())


def test_grow_leaves_indices_range_arguments_and_strings_alone():
    source = 'def f(a, n):\n    s = "x" + "y"\n    return [a[i + 1] for i in range(n - 1)], s\n'
    [child] = GPMutator(**GROW_ONLY).mutate(parents=[[parent(source)]], task=TASK, seed=0)
    assert child.status == "no_op" and child.source == source


def test_grown_children_of_the_circle_packing_seeds_run(env):
    seeds = env.seed_programs()
    proposals = GPMutator(**GROW_ONLY).mutate(
        parents=[[parent(seeds[i % len(seeds)], i)] for i in range(120)], task=env.task(), seed=0)
    valid = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in proposals:
            try:
                env.evaluate_local(p.source)
                valid += 1
            except Exception:  # noqa: BLE001 (InvalidProgram, or a crash of the child)
                pass
    print(f"\ngrow-only valid-child rate over {len(proposals)} children of the circle-packing seeds: "
          f"{valid / len(proposals):.3f}")
    assert valid / len(proposals) >= 0.3
