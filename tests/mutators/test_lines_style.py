"""The ``lines`` rewrite style (the SmolLM2 default): which line it rewrites, its exact prompt, and the
child it builds from a real (tiny, taught) model's completion."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from elm.types import Parent, TaskContext
from mutators import RewriteMutator
from mutators import prompts as P
from mutators import standins as tiny

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASK = TaskContext(name="toy", description="toy task", entry_point="pack", signature="def pack():")
PARENT = '''"""Toy layout."""
import numpy as np


def pack():
    """Three circles."""
    n = 3
    x0, y0 = 0.5, 0.5  # first circle
    pts = [
        (x0 + i, y0) for i in range(n)
    ]
    pts.sort()
    return np.array(pts)


def helper():
    return 1
'''


def test_choose_assignment_picks_one_line_assignments_of_the_entry_body_and_keeps_the_target():
    entry = P.find_entry(PARENT, "pack")
    rng = np.random.default_rng(0)
    picks = [P.choose_assignment(entry, rng) for _ in range(400)]
    heads = {head for _, head in picks}
    # the multi-line "pts = [...]", the docstring, the call statement and the return are never picked
    assert heads == {"    n =", "    x0, y0 ="}
    lines = {line for line, _ in picks}
    assert lines == {6, 7} and all(PARENT.splitlines()[i].startswith(h) for i, h in picks)
    # the float-literal line is three times as likely as the int one
    share = sum(h == "    x0, y0 =" for _, h in picks) / len(picks)
    assert 0.68 < share < 0.82, share
    no_assignment = P.find_entry("def pack():\n    print(1)\n    return 2\n", "pack")
    assert P.choose_assignment(no_assignment, rng) is None


def test_lines_prompt_is_imports_then_the_function_up_to_the_kept_head():
    entry = P.find_entry(PARENT, "pack")
    prompt = P.lines_prompt(entry, "pack", 7, "    x0, y0 =")
    assert prompt == ('import numpy as np\n\n\ndef pack():\n    """Three circles."""\n    n = 3\n'
                      '    x0, y0 =')
    shown = P.lines_prompt(entry, "pack", 7, "    x0, y0 =", show_parent=True)
    assert shown.startswith("import numpy as np\n\n\n" + entry.function_text().rstrip("\n") + "\n\n\n")
    assert shown.endswith('    n = 3\n    x0, y0 =') and "helper" not in shown


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """A tiny CodeGen model taught to answer the x0, y0 prompt with a new right-hand side."""
    path = tiny.build("codegen", tmp_path_factory.mktemp("tiny-lines"))
    entry = P.find_entry(PARENT, "pack")
    tiny.teach(path, P.lines_prompt(entry, "pack", 7, "    x0, y0 ="), " 0.25, 0.75\n    more = 1")
    return path


def _mutator(path, **kwargs):
    return RewriteMutator(backend={"kind": "hf", "model": str(path), "device": "cpu"}, style="lines",
                          sampling={"temperature": 0.0, "max_new_tokens": kwargs.pop("max_new_tokens", 24)},
                          **kwargs)


def _seed_for_line(mutator, line: int) -> int:
    """A batch seed whose draw rewrites ``line`` (0-based) of PARENT."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        plan = mutator._plan([Parent(id=1, source=PARENT, fitness=0.0, descriptor=(0.0,))], TASK, rng)
        if plan.context[1] == line:
            return seed
    raise AssertionError(f"no seed below 200 picks line {line}")


def test_the_child_gets_the_new_right_hand_side_and_nothing_else_changes(taught):
    m = _mutator(taught)
    seed = _seed_for_line(m, 7)
    (p,) = m.mutate(parents=[[Parent(id=1, source=PARENT, fitness=0.0, descriptor=(0.0,))]], task=TASK, seed=seed)
    assert p.status == "ok", p.meta
    assert p.source == PARENT.replace("    x0, y0 = 0.5, 0.5  # first circle\n", "    x0, y0 = 0.25, 0.75\n")
    assert p.meta["head"] == "x0, y0 =" and p.meta["region"] == [8, 8] and p.meta["finish"] == "stop"
    assert p.meta["completion"] == " 0.25, 0.75"  # cut at the end of the line: the next one is not used
    assert p.tokens_in > 0 and p.tokens_out > 0


def test_a_line_cut_at_max_new_tokens_is_malformed_not_spliced(taught):
    m = _mutator(taught, max_new_tokens=2)
    seed = _seed_for_line(m, 7)
    (p,) = m.mutate(parents=[[Parent(id=1, source=PARENT, fitness=0.0, descriptor=(0.0,))]], task=TASK, seed=seed)
    assert p.status == "malformed" and p.source is None and p.meta["finish"] == "length"
    assert "max_new_tokens" in p.meta["detail"]
