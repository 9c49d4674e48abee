"""Language-model operators that show other elites (inspirations): the exact prompts, and bad configs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from elm.types import Parent, TaskContext
from mutators import RewriteMutator
from mutators.backends.base import Backend, ChatPrompt, Completion, Prompt, Sampling

TASK = TaskContext(name="toy", description="Pack circles.", entry_point="pack", signature="def pack():")


def _program(k: int) -> str:
    return f'import numpy as np\n\n\ndef pack():\n    """Version {k}."""\n    n = {k}\n    return np.ones(n)\n'


class RecordingBackend(Backend):
    """Answers every prompt with one fixed completion and keeps the prompts it was given."""

    label = "recording"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[Prompt] = []

    def generate(self, prompts: Sequence[Prompt], *, sampling: Sampling, seed: int) -> list[Completion]:
        self.prompts.extend(prompts)
        return [Completion(text=self.reply, tokens_in=1, tokens_out=1, seconds=0.0, finish="stop") for _ in prompts]


PARENT = Parent(id=7, source=_program(3), fitness=2.5, descriptor=(0.0,))
OTHERS = [Parent(id=2, source=_program(1), fitness=1.0, descriptor=(0.0,)),
          Parent(id=4, source=_program(2), fitness=2.0, descriptor=(0.0,))]


def test_body_style_shows_inspirations_as_earlier_versions_then_the_parent():
    backend = RecordingBackend("    n = 5\n    return np.ones(n)\n")
    mutator = RewriteMutator(backend=backend, style="body", inspirations=2, body_lines=0)
    [child] = mutator.mutate(parents=[[PARENT]], task=TASK, seed=0, inspirations=[OTHERS])
    prompt = backend.prompts[0]
    assert isinstance(prompt, str)
    # FunSearch's layout: versions lowest score first, the parent last, then the next version's header
    v0, v1, v2, v3 = (prompt.index(f"def pack_v{i}(") for i in range(4))
    assert v0 < v1 < v2 < v3
    assert "n = 1" in prompt[v0:v1] and "n = 2" in prompt[v1:v2] and "n = 3" in prompt[v2:v3]
    assert prompt.count("import numpy as np") == 1  # the parent's other code, once
    assert '"""Improved version of `pack_v2`."""' in prompt[v3:]
    assert child.status.value == "ok" and "n = 5" in child.source and child.parent_ids == (7,)
    assert child.meta["inspirations"] == [2, 4]


def test_chat_style_shows_scores_and_without_inspirations_the_prompt_is_unchanged():
    backend = RecordingBackend("import numpy as np\n\n\ndef pack():\n    return np.ones(4)\n```")
    mutator = RewriteMutator(backend=backend, style="chat", inspirations=2)
    mutator.mutate(parents=[[PARENT], [PARENT]], task=TASK, seed=0, inspirations=[OTHERS, []])
    with_others, alone = backend.prompts
    assert isinstance(with_others, ChatPrompt) and isinstance(alone, ChatPrompt)
    user = with_others.messages[-1][1]
    assert "lowest to highest score" in user
    assert user.index("Score 1:") < user.index("Score 2:") < user.index("(score 2.5)")
    plain = RewriteMutator(backend=RecordingBackend(""), style="chat")
    plain.mutate(parents=[[PARENT]], task=TASK, seed=0)
    assert alone.messages == plain.backend.prompts[0].messages  # a child with none: the usual prompt


@pytest.mark.parametrize("style", ["lines", "region"])
def test_styles_that_edit_one_programs_text_refuse_inspirations(style):
    with pytest.raises(ValueError, match="inspirations"):
        RewriteMutator(backend=RecordingBackend(""), style=style, inspirations=2)
    with pytest.raises(ValueError, match="inspirations must be an int >= 0"):
        RewriteMutator(backend=RecordingBackend(""), style="body", inspirations=-1)
