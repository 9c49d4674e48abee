"""Prompt styles for instruction / completion models that rewrite a program's main function.

Five styles, all for the task's entry-point function (``TaskContext.entry_point``):

``chat``
    ELM's prompt mutation through the model's chat template: the task, the
    parent program(s) and an instruction; the reply's first Python code block
    is the child (the whole program). The signature is *not* fixed: the model
    may change it.
``body``
    FunSearch-style plain completion: the parent program with its entry
    function renamed ``<entry>_v0`` (for crossover, ``_v0``, ``_v1``...), then
    the header ``def <entry>_v<k>(...):`` and a docstring asking for an
    improved version; the model writes the body, which replaces the parent's
    entry-function body. The signature is fixed by construction.
``body_chat``
    The ``body`` idea through the chat template: the parent program(s) in the
    user turn, and the assistant's reply prefilled with a code fence, the
    entry function's ``def`` line and a docstring, so the model continues
    with the body. Signature fixed by construction.
``lines``
    Prefix continuation for small models: the program's imports, then its
    entry function up to one one-line assignment of its body, ending with
    that line's ``target =``; the model writes a new right-hand side, which
    ends at the line's end. The child is the parent with that right-hand side
    replaced, so the signature and every name the function binds are fixed by
    construction. A function without such a line falls back to rewriting one
    whole statement. ``show_parent`` also shows the parent's whole function
    first (SmolLM2-135M then mostly copies the line back: docs/mutators.md).
``region``
    A marked region (a few consecutive lines of the entry function's body)
    rewritten through the chat template; the reply replaces exactly those
    lines, re-indented to the region's indentation. Signature fixed.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from elm.types import TaskContext
from mutators.backends.base import ChatPrompt

__all__ = ["STYLES", "EntryFunction", "find_entry", "extract_code", "body_from_completion"]

STYLES = ("chat", "body", "body_chat", "region", "lines")

_SYSTEM = "You are an expert Python programmer. You improve programs and reply with Python code only."
REGION_BEGIN = "# >>> rewrite from here"
REGION_END = "# <<< to here"


@dataclass(frozen=True)
class EntryFunction:
    """Where the entry-point function sits in a program (0-based line indices, end exclusive).

    ``header`` = lines ``[start, body_start)``: decorators, ``def`` line(s)
    (``[start, def_end)``) and the docstring; ``body`` = ``[body_start, end)``;
    ``indent`` = the body's indentation.
    """

    lines: tuple[str, ...]  # the whole program, with line ends
    start: int
    def_end: int
    body_start: int
    end: int
    indent: str

    @property
    def def_lines(self) -> str:
        return "".join(self.lines[self.start:self.def_end])

    @property
    def header(self) -> str:
        return "".join(self.lines[self.start:self.body_start])

    @property
    def body(self) -> str:
        return "".join(self.lines[self.body_start:self.end])

    def with_body(self, body: str) -> str:
        """The program with the entry function's body replaced by ``body`` (indented lines)."""
        if not body.endswith("\n"):
            body += "\n"
        return "".join(self.lines[:self.body_start]) + body + "".join(self.lines[self.end:])

    def renamed(self, name: str, new: str) -> str:
        """The program with the entry function's ``def name`` renamed to ``def new`` (calls untouched)."""
        lines = list(self.lines)
        for i in range(self.start, self.body_start):
            lines[i] = re.sub(rf"\bdef\s+{re.escape(name)}\b", f"def {new}", lines[i], count=1)
        return "".join(lines)

    def function_text(self) -> str:
        return "".join(self.lines[self.start:self.end])


def find_entry(source: str, name: str) -> EntryFunction | None:
    """Locate top-level ``def name`` in ``source``; None if the program does not parse or lacks it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            body = node.body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str) and len(body) > 1:
                first = body[1]  # keep the docstring in the header
            if body[0].lineno <= node.lineno or first.col_offset == 0:
                return None  # "def f(): return 1" on one line: no body lines to replace
            lines = source.splitlines(keepends=True)
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
            line = lines[first.lineno - 1]
            return EntryFunction(lines=tuple(lines), start=start, def_end=body[0].lineno - 1,
                                 body_start=first.lineno - 1, end=node.end_lineno,
                                 indent=line[: len(line) - len(line.lstrip())])
    return None


def extract_code(text: str) -> str | None:
    """The first fenced code block of a reply (or the reply itself if it has no fence and parses).

    A reply that was prefilled with an opening fence starts inside the block:
    everything up to the closing fence is the code.
    """
    fence = re.search(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", text, re.S)
    if fence:
        code = fence.group(1)
    elif "```" in text:
        code = text.split("```", 1)[0]  # prefilled fence: the reply ends at the closing one
    else:
        code = text
    code = code.strip("\n")
    return code + "\n" if code.strip() else None


def body_from_completion(text: str, indent: str) -> str:
    """The indented lines a completion writes after a ``def`` header: up to the first dedented line.

    Lines must be indented at least ``indent`` (the body's indentation) or be
    blank; trailing blank lines are dropped. A completion whose first line is
    not indented yields ``""``.
    """
    out = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.startswith(indent):
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    body = "".join(out)
    return body if body.endswith("\n") or not body else body + "\n"


# ----------------------------------------------------------------------------- prompts


def _task_text(task: TaskContext) -> str:
    """The task's description, followed by its API documentation when it has one (e.g. Sodarace's
    walker-building calls), so that chat prompts name the functions a program may use."""
    return task.description + (f"\n\n{task.api_doc.strip()}" if task.api_doc.strip() else "")


def chat_prompt(sources: Sequence[str], task: TaskContext, instruction: str, *,
                inspirations: Sequence[tuple[str, float]] = (), scores: Sequence[float] = ()) -> ChatPrompt:
    """``chat`` style: task + parent program(s) + instruction; reply prefilled with a code fence.

    ``inspirations``: other programs with their scores, shown first (lowest score first) as earlier
    versions; the parents are then shown with their ``scores`` when given.
    """
    def fence(s: str) -> str:
        return f"```python\n{s.rstrip()}\n```"

    earlier = ""
    if inspirations:
        earlier = "Earlier programs for this task, from lowest to highest score:\n\n" + "\n\n".join(
            f"Score {score:.6g}:\n{fence(src)}" for src, score in inspirations) + "\n\n"
    shown = "\n\n".join(
        (f"Program {i + 1}" + (f" (score {scores[i]:.6g})" if i < len(scores) else "") + ":\n"
         if len(sources) > 1 or scores else "") + fence(s)
        for i, s in enumerate(sources)
    )
    which = "these programs" if len(sources) > 1 else "this program"
    sig = f" Keep the signature `{task.signature}`." if task.signature else ""
    user = (f"{_task_text(task)}\n\n{earlier}Here is {which}:\n\n{shown}\n\n{instruction}{sig} "
            f"Reply with the complete new program in one Python code block.")
    return ChatPrompt(messages=(("system", _SYSTEM), ("user", user)), prefill="```python\n")


def body_start(entry: EntryFunction, lines: int) -> str:
    """The first ``lines`` non-blank lines of the entry function's body (with blank lines between).

    Given to the model as the start of the new body: a small model that sees
    only a header tends to end the function at once; started inside the
    body, it continues it.
    """
    out, count = [], 0
    for line in entry.lines[entry.body_start:entry.end]:
        if count >= lines:
            break
        out.append(line)
        count += bool(line.strip())
    return "".join(out)


def body_prompt(entries: Sequence[EntryFunction], name: str, instruction: str, start: str = "",
                base: int = 0) -> str:
    """``body`` style, FunSearch's layout: the other code (imports, helpers) of ``entries[base]`` (the
    first parent), then every entry function as ``name_v0``, ``name_v1``..., then the next version's
    header. Inspirations come before the parents (``base`` > 0), lowest score first, as FunSearch
    orders its versions.

    The versions sit right above the header, so even a small model sees the
    body it is to vary immediately before it writes one.
    """
    k = len(entries)
    first = entries[base]
    rest = "".join(first.lines[:first.start]) + "".join(first.lines[first.end:])
    rest = re.sub(r"\n{4,}", "\n\n\n", rest).strip("\n")
    parts = [rest] if rest else []
    parts += [_rename_def(e.function_text(), name, f"{name}_v{i}").rstrip("\n") for i, e in enumerate(entries)]
    versions = ", ".join(f"`{name}_v{i}`" for i in range(base, k))  # the parents' versions
    head = _rename_def(first.def_lines, name, f"{name}_v{k}")
    doc = f'{first.indent}"""{instruction.format(versions=versions)}"""\n'
    return "\n\n\n".join(parts) + "\n\n\n" + head + doc + start


def lines_prompt(entry: EntryFunction, name: str, first: int, head: str = "", show_parent: bool = False) -> str:
    """``lines`` style: the program's imports, the parent's entry function (``show_parent``), then
    the same function again up to line ``first``, followed by ``head`` (the start of line
    ``first`` that is kept, e.g. ``"    x0, y0 ="``): the model writes the rest.

    Helper functions are left out: the lines to vary are in the entry
    function, and on a CPU the prompt's length is most of the cost.
    """
    imports = "".join(line for line in entry.lines[:entry.start] if line.startswith(("import ", "from ")))
    # Both copies keep the function's own name: with renamed versions (FunSearch's _v0, _v1) a
    # small model writes calls to pack_v0() into the new lines, which do not exist in the child.
    v0 = entry.function_text().rstrip("\n") + "\n\n\n" if show_parent else ""
    v1 = "".join(entry.lines[entry.start:first]) + head
    return (imports + "\n\n" if imports else "") + v0 + v1


def body_chat_prompt(entries: Sequence[EntryFunction], name: str, task: TaskContext, instruction: str,
                     start: str = "", base: int = 0) -> ChatPrompt:
    """``body_chat`` style: programs shown in the user turn (``entries[base]``, the first parent, as a
    whole program, the others as functions); reply prefilled up to the new body."""
    shown = "\n\n".join(f"```python\n{e.renamed(name, f'{name}_v{i}').rstrip()}\n```" if i == base else
                         f"```python\n{_rename_def(e.function_text(), name, f'{name}_v{i}').rstrip()}\n```"
                         for i, e in enumerate(entries))
    versions = ", ".join(f"`{name}_v{i}`" for i in range(base, len(entries)))  # the parents' versions
    doc = instruction.format(versions=versions)
    user = (f"{_task_text(task)}\n\n{shown}\n\nWrite `{name}`, an improved version of {versions}. "
            f"Keep its signature. Reply with the function in one Python code block.")
    prefill = f"```python\n{entries[base].def_lines}{entries[base].indent}\"\"\"{doc}\"\"\"\n{start}"
    return ChatPrompt(messages=(("system", _SYSTEM), ("user", user)), prefill=prefill)


def region_prompt(entry: EntryFunction, first: int, last: int, task: TaskContext, instruction: str) -> ChatPrompt:
    """``region`` style: the program with lines ``[first, last)`` marked; reply = replacement lines."""
    lines = list(entry.lines)
    indent = _line_indent(lines[first])
    marked = "".join(lines[:first]) + f"{indent}{REGION_BEGIN}\n" + "".join(lines[first:last]) \
        + f"{indent}{REGION_END}\n" + "".join(lines[last:])
    user = (f"{_task_text(task)}\n\n```python\n{marked.rstrip()}\n```\n\n{instruction} Rewrite only the lines "
            f"between `{REGION_BEGIN}` and `{REGION_END}`. Reply with the new lines only, in one Python "
            f"code block, without the marker comments.")
    return ChatPrompt(messages=(("system", _SYSTEM), ("user", user)), prefill="```python\n")


def splice_region(entry: EntryFunction, first: int, last: int, reply: str) -> str:
    """The program with lines ``[first, last)`` replaced by ``reply`` re-indented to the region's indent."""
    kept = [line for line in reply.splitlines() if line.strip() not in (REGION_BEGIN, REGION_END)]
    block = textwrap.dedent("\n".join(kept)).strip("\n")
    indent = _line_indent(entry.lines[first])
    new = "".join(indent + line + "\n" if line.strip() else "\n" for line in block.split("\n")) if block else ""
    return "".join(entry.lines[:first]) + new + "".join(entry.lines[last:])


def choose_region(entry: EntryFunction, rng: np.random.Generator, max_lines: int) -> tuple[int, int]:
    """A random run of 1..max_lines body lines that starts and ends at the same indentation."""
    body = list(range(entry.body_start, entry.end))
    nonblank = [i for i in body if entry.lines[i].strip()]
    # never start at a return or a comment: rewriting the final return almost always breaks the
    # program's contract, and a comment line changes nothing
    starts = [i for i in nonblank if not entry.lines[i].lstrip().startswith(("return", "#"))] or nonblank
    first = starts[int(rng.integers(len(starts)))]
    indent = _line_indent(entry.lines[first])
    last = first + 1
    limit = first + int(rng.integers(1, max_lines + 1))
    # extend while lines are at least as indented (stay inside one block) and are not a return;
    # never past the body
    while last < min(limit, entry.end) and (not entry.lines[last].strip()
                                            or (_line_indent(entry.lines[last]).startswith(indent)
                                                and not entry.lines[last].lstrip().startswith("return"))):
        last += 1
    # a block must not end on a line that opens a nested block (its body would be cut off)
    while last < entry.end and entry.lines[last].strip() and len(_line_indent(entry.lines[last])) > len(indent):
        last += 1
    return first, last


def choose_statement(entry: EntryFunction, rng: np.random.Generator) -> tuple[int, int]:
    """Lines ``[first, last)`` of one simple statement of the entry function (any depth).

    Not a return, a nested ``def``/``class``, a docstring or a compound
    statement's header; statements with numeric literals are three times as
    likely (a small model varies a constant far more often validly than it
    rewrites logic). Falls back to :func:`choose_region` when there is none.
    """
    source = "".join(entry.lines)
    tree = ast.parse(source)
    fn = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
              and n.lineno - 1 <= entry.def_end <= n.end_lineno and n.end_lineno == entry.end)
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)
    candidates, weights = [], []
    for node in ast.walk(fn):
        if isinstance(node, simple) and node.lineno - 1 >= entry.body_start:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # docstring or bare literal
            numeric = any(isinstance(c, ast.Constant) and type(c.value) in (int, float) for c in ast.walk(node))
            candidates.append((node.lineno - 1, node.end_lineno))
            weights.append(3.0 if numeric else 1.0)
    if not candidates:
        return choose_region(entry, rng, 3)
    p = np.array(weights) / sum(weights)
    return candidates[int(rng.choice(len(candidates), p=p))]


def assignment_lines(entry: EntryFunction) -> list[tuple[int, str, bool]]:
    """The one-line assignments of the entry function's body that the ``lines`` style may rewrite.

    Returns ``(line index, head, knob)`` in source order: ``head`` is the line up to and including
    its ``=`` (or ``+=``...), e.g. ``"    x0, y0 ="``; ``knob`` is True when the right-hand side
    has a float literal. Lines of statements spanning several lines, or followed by another
    statement on the same line, are left out. Empty when the program has no such function.
    """
    tree = ast.parse("".join(entry.lines))
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.end_lineno == entry.end and n.lineno - 1 <= entry.def_end), None)
    if fn is None:
        return []
    found = []
    for node in ast.walk(fn):
        if not isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) or node.value is None:
            continue
        line = node.lineno - 1
        if line < entry.body_start or node.end_lineno != node.lineno or node.value.lineno != node.lineno:
            continue  # header/docstring, or a statement over several lines
        text = entry.lines[line]
        head = text[:len(text.encode()[:node.value.col_offset].decode(errors="ignore"))].rstrip()
        if not head.endswith("="):
            continue  # e.g. a parenthesised target split oddly: not a plain "target = value" line
        rest = text[len(text.encode()[:node.end_col_offset].decode(errors="ignore")):].strip()
        if rest and not rest.startswith("#"):
            continue  # another statement follows on the line ("a = 1; b = 2"): it would be lost
        # a float literal is usually a tuning knob (a position, a spacing); an int is often a count
        # the task fixes (n = 26), so only floats get the extra weight
        knob = any(isinstance(c, ast.Constant) and type(c.value) is float for c in ast.walk(node.value))
        found.append((line, head, knob))
    return found


def choose_assignment(entry: EntryFunction, rng: np.random.Generator) -> tuple[int, str] | None:
    """A one-line assignment of the entry function's body and the part of its line that is kept.

    Returns ``(line index, head)`` where ``head`` is the line up to and
    including its ``=`` (or ``+=``...), e.g. ``"    x0, y0 ="``: the model
    writes a new right-hand side, so the names the rest of the function uses
    stay bound by construction. Assignments with float literals are three
    times as likely (a small model varies a constant far more often validly
    than it rewrites logic). None when the function has no such line
    (see :func:`assignment_lines`).
    """
    candidates = assignment_lines(entry)
    if not candidates:
        return None
    weights = np.array([3.0 if knob else 1.0 for _, _, knob in candidates])
    line, head, _ = candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]
    return line, head


def _line_indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _rename_def(text: str, name: str, new: str) -> str:
    return re.sub(rf"\bdef\s+{re.escape(name)}\b", f"def {new}", text, count=1)
