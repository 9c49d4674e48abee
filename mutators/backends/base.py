"""The text-generation interface every model backend implements.

A backend turns a batch of prompts into a batch of completions. Prompts are
either raw text (``str``: completion models, FIM and diff formats) or a
:class:`ChatPrompt` (instruction-tuned models; the backend applies the model's
chat template, or sends the messages to a chat endpoint). Backends never
raise for one bad child: a completion that failed carries ``finish="error"``
and the reason; only a backend that cannot work at all raises.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Backend", "ChatPrompt", "Completion", "Prompt", "Sampling", "cut_at_stop"]


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation for a chat model: ``messages`` is a tuple of ``(role, content)`` pairs.

    Roles are ``"system"``, ``"user"`` and ``"assistant"``. ``prefill`` is text
    the assistant's reply starts with (e.g. a code fence): it is appended after
    the rendered generation prompt and is *not* part of the completion text.
    """

    messages: tuple[tuple[str, str], ...]
    prefill: str = ""

    def __post_init__(self) -> None:
        messages = tuple((str(r), str(c)) for r, c in self.messages)
        if not messages:
            raise ValueError("ChatPrompt needs at least one (role, content) message")
        for role, _ in messages:
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"chat role must be system/user/assistant, got {role!r}")
        object.__setattr__(self, "messages", messages)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


Prompt = str | ChatPrompt


@dataclass(frozen=True)
class Sampling:
    """Decoding settings shared by a batch.

    ``temperature`` 0 means greedy decoding. Sampling keeps the ``top_k`` most
    likely tokens (0: the whole vocabulary), then the smallest set of those
    whose probability reaches ``top_p`` (nucleus), as Hugging Face's
    ``generate`` does with its default ``top_k=50``. ``max_new_tokens`` bounds
    the completion length in tokens. ``stop`` strings end a completion; the
    returned text is cut *before* the first stop string (which is excluded),
    the model's end-of-sequence token always ends it too.
    """

    max_new_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        t = self.temperature
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = no limit), got {self.top_k!r}")
        stop = tuple(str(s) for s in self.stop)
        if any(s == "" for s in stop):
            raise ValueError("stop strings must be non-empty")
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))


@dataclass(frozen=True)
class Completion:
    """One generated continuation.

    ``text`` is cut before the first stop string / end-of-sequence token.
    ``finish`` is ``"stop"`` (a stop string or EOS ended it), ``"length"``
    (``max_new_tokens`` reached: the text may be truncated mid-line) or
    ``"error"`` (``error`` says why; ``text`` is empty) or ``"prompt_too_long"``
    (the prompt and ``max_new_tokens`` do not fit the model's context: the
    row was not run; ``text`` is empty). ``seconds`` is this
    child's share of the batch's wall time; ``latency_s`` the wall time of
    the request or batch that produced it.
    """

    text: str
    tokens_in: int
    tokens_out: int
    seconds: float
    finish: str
    latency_s: float = 0.0
    error: str | None = None


class Backend(ABC):
    """Generates completions for batches of prompts. Lives inside the mutator's Ray actor."""

    #: short description for logs and ``Proposal.meta`` (e.g. ``"hf:/path/to/model"``)
    label: str = "backend"
    #: which weights write the completions: ``"base"``, or the fine-tuned version loaded (an
    #: adapter's ``version`` from its ``elm_adapter.json``); recorded with every child
    version: str = "base"
    #: True if a :class:`ChatPrompt`'s ``prefill`` is applied (the reply continues it)
    supports_prefill: bool = True
    #: tokens of prompt + completion the model can attend to; None: unknown (no length guard)
    context_length: int | None = None

    def prompt_tokens(self, prompt: Prompt) -> int | None:
        """Tokens ``prompt`` takes as the model sees it; None when this backend cannot count them."""
        return None

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], *, sampling: Sampling, seed: int) -> list[Completion]:
        """One completion per prompt, in order; seeded (same seed + batch -> same output where the backend allows)."""

    def load_adapter(self, path: str) -> str:
        """Replace the weights with the base model plus the adapter in directory ``path``; return its
        version. Keeps the current weights when it fails. Default: this backend cannot (ValueError)."""
        raise ValueError(f"backend {self.label} cannot load adapters in a run; use the hf backend "
                         "(for vLLM, serve the adapter with --lora-modules and use the openai backend)")

    def close(self) -> None:
        """Release the model or connections (default: nothing)."""


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop string, and whether one was found."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if 0 <= i < cut:
            cut = i
    return text[:cut], cut < len(text)
