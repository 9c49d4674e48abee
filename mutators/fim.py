"""Fill-in-the-middle: the seed models' prompt formats and the choice of the span to rewrite.

A FIM model sees the code before and after a hole and writes the hole. The
formats differ in marker spelling, order and token ids (sources: the model
cards and the vendors' own code, pinned in ``shared/data/tokenizers/README.md``):

=============  =====  ==============================================  ==================
format         order  prompt                                          marker ids
=============  =====  ==============================================  ==================
santacoder     PSM    ``<fim-prefix>P<fim-suffix>S<fim-middle>``       49153/49155/49154
fim_neox       SPM    ``<|SUF|>S<|PRE|>P<|MID|>``                      50277/50278/50279
refact         SPM    ``<fim_suffix>S<fim_prefix>P<fim_middle>``       3/1/2
refact_psm     PSM    ``<fim_prefix>P<fim_suffix>S<fim_middle>``       1/3/2
=============  =====  ==============================================  ==================

Every format ends the middle with ``<|endoftext|>`` (49152 for SantaCoder, 0
for the others). ``skip_special_tokens`` would strip SantaCoder's markers
(special) but *not* FIM-NeoX's (added as non-special): completions are
therefore decoded with special tokens kept and cut at the first marker or EOS
here, which works the same for both. :meth:`FIMFormat.check_tokenizer`
asserts the marker ids at load, because a tokenizer copy with extra added
tokens shifts FIM-NeoX's sentinels silently.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FIMFormat", "FORMATS", "Span", "SPAN_KINDS", "choose_span", "trim_suffix_overlap"]


@dataclass(frozen=True)
class FIMFormat:
    """Marker strings, order and expected token ids of one model family's FIM format."""

    name: str
    prefix: str
    suffix: str
    middle: str
    order: str  # "psm" (prefix, suffix, middle) or "spm" (suffix, prefix, middle)
    eos: str = "<|endoftext|>"
    ids: Mapping[str, int] = field(default_factory=dict)  # marker -> id in the real vocabulary

    def __post_init__(self) -> None:
        if self.order not in ("psm", "spm"):
            raise ValueError(f"FIM order must be 'psm' or 'spm', got {self.order!r}")

    def with_order(self, order: str) -> FIMFormat:
        from dataclasses import replace

        return replace(self, order=order, name=f"{self.name}:{order}")

    def prompt(self, prefix: str, suffix: str) -> str:
        """The exact prompt string; the model's completion is the middle."""
        if self.order == "psm":
            return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"
        return f"{self.suffix}{suffix}{self.prefix}{prefix}{self.middle}"

    @property
    def stops(self) -> tuple[str, ...]:
        """Strings that end a middle: EOS and every marker (a model may emit one instead of EOS)."""
        return (self.eos, self.prefix, self.suffix, self.middle)

    def check_tokenizer(self, tokenizer: Any, *, expected: Mapping[str, int] | None = None) -> dict[str, int]:
        """Assert that each marker and EOS is one token with its expected id; returns the ids.

        ``expected`` overrides :attr:`ids` (for test vocabularies). Raises
        ValueError naming the marker, the ids found and the likely cause.
        """
        want = dict(self.ids if expected is None else expected)
        found: dict[str, int] = {}
        order = (self.prefix, self.suffix) if self.order == "psm" else (self.suffix, self.prefix)
        for marker in (*order, self.middle, self.eos):  # in prompt order
            ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ValueError(
                    f"FIM format {self.name}: marker {marker!r} is {len(ids)} tokens {ids} in this tokenizer, "
                    f"not one; wrong tokenizer or wrong spelling (SantaCoder uses hyphens, StarCoder/Refact "
                    f"underscores)")
            found[marker] = ids[0]
            if marker in want and ids[0] != want[marker]:
                raise ValueError(
                    f"FIM format {self.name}: marker {marker!r} has id {ids[0]}, expected {want[marker]}. "
                    f"The tokenizer has different added tokens (e.g. a copy with extra tokens, or the "
                    f"FIM-NeoX tokenizer from before its hotfix); use the model's own current tokenizer")
        return found


FORMATS: dict[str, FIMFormat] = {
    f.name: f
    for f in (
        FIMFormat("santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>", "psm",
                  ids={"<fim-prefix>": 49153, "<fim-middle>": 49154, "<fim-suffix>": 49155, "<|endoftext|>": 49152}),
        FIMFormat("fim_neox", "<|PRE|>", "<|SUF|>", "<|MID|>", "spm",
                  ids={"<|SUF|>": 50277, "<|PRE|>": 50278, "<|MID|>": 50279, "<|endoftext|>": 0}),
        FIMFormat("refact", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "spm",
                  ids={"<fim_prefix>": 1, "<fim_middle>": 2, "<fim_suffix>": 3, "<|endoftext|>": 0}),
        FIMFormat("refact_psm", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "psm",
                  ids={"<fim_prefix>": 1, "<fim_middle>": 2, "<fim_suffix>": 3, "<|endoftext|>": 0}),
    )
}

#: span kinds :func:`choose_span` understands
SPAN_KINDS = ("body", "block", "lines")


@dataclass(frozen=True)
class Span:
    """A hole in a program: ``prefix + middle + suffix == source``; lines are 1-based, inclusive."""

    prefix: str
    middle: str
    suffix: str
    kind: str
    first_line: int
    last_line: int


def choose_span(source: str, *, kind: str, rng: np.random.Generator, function: str | None = None,
                max_lines: int = 8) -> Span | None:
    """Pick a span of whole lines inside a function of ``source``.

    ``kind``: ``"body"`` = a function's whole body (after its docstring);
    ``"block"`` = one statement at any depth (a compound statement with
    everything inside it); ``"lines"`` = 1..``max_lines`` consecutive lines of
    a body, ignoring statement boundaries (as FIM training spans do).
    ``function``: only that top-level function, if the program defines it
    (the task's entry point); otherwise any function. Returns None when the
    program does not parse or has no function with a body to cut.
    """
    if kind not in SPAN_KINDS:
        raise ValueError(f"span kind must be one of {SPAN_KINDS}, got {kind!r}")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if function is not None:
        chosen = [f for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == function]
        functions = chosen or functions
    bodies = []
    for fn in functions:
        body = list(fn.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]  # keep the docstring: it tells the model what the function does
        if body:
            bodies.append(body)
    if not bodies:
        return None
    body = bodies[int(rng.integers(len(bodies)))]
    lines = source.splitlines(keepends=True)
    if kind == "body":
        first, last = body[0].lineno, body[-1].end_lineno
    elif kind == "block":
        statements = [s for stmt in body for s in ast.walk(stmt) if isinstance(s, ast.stmt)]
        stmt = statements[int(rng.integers(len(statements)))]
        first, last = stmt.lineno, stmt.end_lineno
    else:
        lo, hi = body[0].lineno, body[-1].end_lineno
        first = int(rng.integers(lo, hi + 1))
        last = min(hi, first + int(rng.integers(0, max_lines)))
    if not source.endswith("\n") and last == len(lines):
        lines[-1] += "\n"
    return Span(prefix="".join(lines[:first - 1]), middle="".join(lines[first - 1:last]),
                suffix="".join(lines[last:]), kind=kind, first_line=first, last_line=last)


def trim_suffix_overlap(middle: str, suffix: str) -> tuple[str, int]:
    """``middle`` without the lines that rewrite the start of ``suffix``, and how many lines were cut.

    A FIM model that does not stop at the hole's end writes on into the code
    after it (Refact's card warns it "likes to repeat itself"); the child would
    then carry those lines twice. The longest run of the middle's last lines
    that equals the suffix's first lines (compared without trailing
    whitespace; at least one of them not blank) is cut. Shapes: both strings
    end with a newline or are empty.
    """
    m = middle.splitlines(keepends=True)
    s = suffix.splitlines(keepends=True)
    for k in range(min(len(m), len(s)), 0, -1):
        tail, head = m[len(m) - k:], s[:k]
        if any(x.strip() for x in head) and [x.rstrip() for x in tail] == [x.rstrip() for x in head]:
            return "".join(m[: len(m) - k]), k
    return middle, 0
