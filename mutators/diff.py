"""Unified-diff parsing and tolerant, never-silently-wrong application (for diff models).

A diff model (CarperAI's diff-codegen-350m) writes a unified diff of the
parent. Its hunk headers are often wrong (line numbers off, counts off), the
whitespace of its context lines drifts, and sampling is cut at a length limit.
:func:`apply_diff` therefore locates every hunk by its *content* (context and
removed lines), using the header's line number only to choose between equal
matches, and applies all hunks or none:

* ``applied``: every hunk located and applied; ``source`` is the new program.
* ``no_op``: the diff applies but changes nothing (only context, or ``-x``/``+x`` pairs).
* ``malformed``: no hunk, a truncated hunk, a line that is not diff syntax
  before any change, or a pure insertion without a usable line number.
* ``context_not_found``: some hunk's context/removed lines are not in the
  parent (after whitespace normalisation), hunks overlap, a headerless
  hunk matches in several places (ambiguous), or a pure insertion (no
  context at all) whose header numbers disagree or whose lines do not fit
  the indentation where the header puts them.

Models go on after a diff (prose, another record): the first line that is
not diff syntax ends the diff once a hunk changed something (``detail``
says so). Blank lines around a hunk (a completion starting with a newline
after ``<DFF>``) are layout: a hunk not found with them is looked up again
without them.

Matching tries, in order: exact lines; lines equal after stripping trailing
whitespace; lines equal after stripping all leading and trailing whitespace,
accepted only when every matched non-blank line is shifted by the *same*
indentation (then added lines are re-indented by that shift). A blank line in
a hunk body (editors strip the lone space of an empty context line) counts as
an empty context line. ``\\ No newline at end of file`` markers are ignored,
and the parent's final newline is kept as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["DiffResult", "DiffStatus", "Hunk", "apply_diff", "parse_diff", "read_diff"]

_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class DiffStatus(str, Enum):
    APPLIED = "applied"
    NO_OP = "no_op"
    MALFORMED = "malformed"
    CONTEXT_NOT_FOUND = "context_not_found"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Hunk:
    """One hunk: ``lines`` are ``(tag, text)`` with tag ``" "``, ``"-"`` or ``"+"`` (text without the tag).

    ``old_start``/``old_len``/``new_start``/``new_len`` come from the header
    (1-based; None when the header lacks them or is unreadable).
    """

    lines: tuple[tuple[str, str], ...]
    old_start: int | None = None
    old_len: int | None = None
    new_start: int | None = None
    new_len: int | None = None

    @property
    def before(self) -> list[str]:
        return [t for tag, t in self.lines if tag != "+"]

    @property
    def after(self) -> list[str]:
        return [t for tag, t in self.lines if tag != "-"]

    @property
    def complete(self) -> bool:
        """True when the header gives counts and the body has exactly that many old and new lines."""
        if self.old_len is None or self.new_len is None:
            return False
        return len(self.before) == self.old_len and len(self.after) == self.new_len


@dataclass(frozen=True)
class DiffResult:
    """Outcome of :func:`apply_diff`. ``source`` is set only for ``applied`` and ``no_op``."""

    status: DiffStatus
    source: str | None
    hunks: int = 0
    detail: str = ""


class _Malformed(ValueError):
    pass


def parse_diff(text: str) -> list[Hunk]:
    """Hunks of a unified diff (see :func:`read_diff`, which also says where the diff was cut)."""
    return read_diff(text)[0]


def read_diff(text: str) -> tuple[list[Hunk], int | None]:
    """Hunks of a unified diff and the 1-based line where trailing non-diff text was cut (None: not cut).

    Text before the first ``@@`` header (``---``/``+++`` lines) is skipped. A
    diff without any ``@@`` header is read as one headerless hunk if its lines
    are diff syntax; blank lines before its first line are layout (a completion
    often starts with a newline after ``<DFF>``), not context. The first line
    that is not diff syntax ends the diff when the hunks before it change
    something (models go on with prose or another record after a valid hunk);
    before any change it makes the diff malformed. Trailing blank context
    lines (the blank line that often ends a model's output) are dropped unless
    the header counts them.

    Raises:
        ValueError: a line that is not ``" "``/``"-"``/``"+"``/blank/``"\\"`` comes before any change.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    hunks: list[Hunk] = []
    current: list[tuple[str, str]] | None = None
    header: tuple[int | None, ...] = (None, None, None, None)
    saw_header = any(line.startswith("@@") for line in lines)
    if not saw_header:
        current = []
        while lines and lines[0].strip() == "":
            lines.pop(0)  # layout before a headerless diff
    cut: int | None = None
    for n, line in enumerate(lines, 1):
        if line.startswith("@@"):
            if current:
                hunks.append(Hunk(tuple(current), *header))
            m = _HEADER.match(line)
            if m:
                a, b, c, d = m.groups()
                header = (int(a), 1 if b is None else int(b), int(c), 1 if d is None else int(d))
            else:  # "@@ garbage @@": position unknown, content still usable
                header = (None, None, None, None)
            current = []  # text after the closing "@@" (git's function context) is not body
            continue
        if current is None:  # before the first header: ---/+++ file lines, "diff --git", prose
            continue
        if line.startswith("\\"):  # "\ No newline at end of file"
            continue
        if line == "":
            current.append((" ", ""))
        elif line[0] in " -+":
            if line.startswith(("--- ", "+++ ")) and not current:
                continue  # file headers of a second file section
            current.append((line[0], line[1:]))
        elif any(tag != " " for h in [*hunks, Hunk(tuple(current))] for tag, _ in h.lines):
            cut = n  # prose or another record after a hunk that changes something: the diff ends here
            break
        else:
            raise _Malformed(f"line {n} of the diff is not diff syntax: {line[:60]!r}")
    if current:
        hunks.append(Hunk(tuple(current), *header))
    # trailing blank "context" lines are usually the blank line that ends the model's output
    cleaned = []
    for h in hunks:
        body = list(h.lines)
        while body and body[-1] == (" ", "") and (
                h.old_len is None or len([1 for t, _ in body if t != "+"]) > h.old_len):
            body.pop()
        if body:
            cleaned.append(Hunk(tuple(body), h.old_start, h.old_len, h.new_start, h.new_len))
    return cleaned, cut


def apply_diff(source: str, diff: str, *, truncated: bool = False) -> DiffResult:
    """Apply ``diff`` to ``source``, all hunks or none (see the module docstring for the rules).

    Args:
        source: the parent program.
        diff: the diff text (what follows ``<DFF>`` in a diff model's output).
        truncated: the generation hit its length limit, so the last hunk may be
            cut short: it is then accepted only if its header counts match its
            body exactly and its last line is whole (ends with a newline);
            otherwise the result is ``malformed``.
    """
    try:
        hunks, cut = read_diff(diff)
    except _Malformed as exc:
        return DiffResult(DiffStatus.MALFORMED, None, detail=str(exc))
    if not hunks:
        return DiffResult(DiffStatus.MALFORMED, None, detail="no hunk in the diff")
    if truncated and cut is None and (not hunks[-1].complete or not diff.endswith("\n")):
        # counts can match a body whose last line was cut mid-line ("+    z = y" of "+    z = y + 3")
        return DiffResult(DiffStatus.MALFORMED, None, len(hunks),
                          "output was cut at the length limit inside the last hunk")
    note = "" if cut is None else f"text from line {cut} of the diff on is not diff syntax and was ignored"
    ends_with_newline = source.endswith("\n")
    lines = source.split("\n")
    if ends_with_newline:
        lines.pop()
    out: list[str] = []
    pointer = 0  # hunks apply left to right and may not overlap
    offset = 0  # lines added minus lines removed by the hunks before (new = old + offset)
    for k, hunk in enumerate(hunks, 1):
        before, after = hunk.before, hunk.after
        if not before:
            # A pure insertion has no content to anchor it: only the header can place it, so both
            # of its numbers must agree and the inserted lines must fit the indentation there.
            if hunk.old_start is None:
                return DiffResult(DiffStatus.MALFORMED, None, len(hunks),
                                  f"hunk {k} only adds lines and has no line number to place them")
            at = hunk.old_start if hunk.old_len == 0 else hunk.old_start - 1  # "-l,0": insert after line l
            if not pointer <= at <= len(lines):
                return DiffResult(DiffStatus.CONTEXT_NOT_FOUND, None, len(hunks),
                                  f"hunk {k} inserts at line {at} outside the file or before an earlier hunk")
            if hunk.new_start is not None and hunk.new_start - offset not in (at, at + 1):
                return DiffResult(DiffStatus.CONTEXT_NOT_FOUND, None, len(hunks),
                                  f"hunk {k} only adds lines and its header numbers disagree "
                                  f"(-{hunk.old_start} vs +{hunk.new_start}): no place to trust")
            if not _fits(lines[:at], lines[at:], after):
                return DiffResult(DiffStatus.CONTEXT_NOT_FOUND, None, len(hunks),
                                  f"hunk {k} only adds lines and they do not fit the indentation after line {at} "
                                  f"(its header number is likely wrong)")
            out.extend(lines[pointer:at])
            out.extend(after)
            pointer = at
            offset += len(after)
            continue
        body = hunk.lines
        found = _locate(lines, before, pointer, hunk.old_start)
        trimmed = _trim_blank_edges(body)
        if found is None and trimmed != body and any(t != "+" for t, _ in trimmed):
            # a blank line the model put first/last (e.g. a newline after <DFF>) is layout, not context
            body = trimmed
            before = [t for tag, t in body if tag != "+"]
            found = _locate(lines, before, pointer, hunk.old_start)
        if found is None:
            where = "" if hunk.old_start is None else f" (header says line {hunk.old_start})"
            return DiffResult(DiffStatus.CONTEXT_NOT_FOUND, None, len(hunks),
                              f"hunk {k}: its {len(before)} context/removed lines are not in the parent "
                              f"after line {pointer}{where}: {before[0][:60]!r}...")
        start, shift = found
        out.extend(lines[pointer:start])
        j = start
        for tag, text in body:  # context lines keep the parent's exact text, not the diff's drifted copy
            if tag == " ":
                out.append(lines[j])
                j += 1
            elif tag == "-":
                j += 1
            else:
                out.extend(_reindent([text], shift))
        pointer = j
        offset += sum(t == "+" for t, _ in body) - sum(t == "-" for t, _ in body)
    out.extend(lines[pointer:])
    new = "\n".join(out) + ("\n" if ends_with_newline else "")
    if new == source:
        return DiffResult(DiffStatus.NO_OP, source, len(hunks),
                          "; ".join(filter(None, ["the diff changes nothing", note])))
    return DiffResult(DiffStatus.APPLIED, new, len(hunks), note)


def _trim_blank_edges(body: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``body`` without its leading and trailing blank context lines."""
    first, last = 0, len(body)
    while first < last and body[first] == (" ", ""):
        first += 1
    while last > first and body[last - 1] == (" ", ""):
        last -= 1
    return body[first:last]


_OPENS = (":", "{")
_CONTINUES = ("(", "[", ",", "\\")


def _fits(above: list[str], below: list[str], inserted: list[str]) -> bool:
    """Whether ``inserted`` lines fit the indentation between ``above`` and ``below`` (Python-like blocks).

    The first inserted line must be deeper than the line above if that one
    opens a block (ends with ``:`` or ``{``), else no deeper than it; the line
    below may not be deeper than the last inserted line unless that one opens
    a block. Inside an open bracket anything fits.
    """
    new = [x for x in inserted if x.strip()]
    if not new:
        return True
    prev = next((x for x in reversed(above) if x.strip()), None)
    nxt = next((x for x in below if x.strip()), None)
    first, last = _width(_indent(new[0])), _width(_indent(new[-1]))
    if prev is not None:
        if prev.rstrip().endswith(_CONTINUES):
            return True
        p = _width(_indent(prev))
        if (first <= p) if prev.rstrip().endswith(_OPENS) else (first > p):
            return False
    elif first > 0:
        return False
    if nxt is not None and _width(_indent(nxt)) > last and not new[-1].rstrip().endswith(_OPENS):
        return False
    return True


def _locate(lines: list[str], before: list[str], pointer: int,
            hint: int | None) -> tuple[int, str | tuple[int, str]] | None:
    """Start index of ``before`` in ``lines[pointer:]`` and the indentation shift, or None.

    Tries exact, then trailing-whitespace-insensitive, then indentation-shifted
    matching; among several matches of the first pass that finds any, takes
    the one nearest the header's line number; several matches and no line
    number is ambiguous (None), since guessing could silently edit the wrong place.
    """
    m = len(before)
    candidates = range(pointer, len(lines) - m + 1)
    for normalise in (lambda s: s, str.rstrip):
        want = [normalise(b) for b in before]
        hits = [i for i in candidates if [normalise(x) for x in lines[i:i + m]] == want]
        if hits:
            best = _nearest(hits, hint)
            return None if best is None else (best, "")
    want = [b.strip() for b in before]
    hits = []
    for i in candidates:
        window = lines[i:i + m]
        if [x.strip() for x in window] != want:
            continue
        shift = _common_shift(window, before)
        if shift is not None:
            hits.append((i, shift))
    if not hits:
        return None
    best = _nearest([i for i, _ in hits], hint)
    return None if best is None else (best, dict(hits)[best])


def _nearest(hits: list[int], hint: int | None) -> int | None:
    """The hit nearest the header's line; None when several hits and no line number (ambiguous)."""
    if hint is None:
        return hits[0] if len(hits) == 1 else None
    return min(hits, key=lambda i: (abs(i - (hint - 1)), i))


def _indent(s: str) -> str:
    return s[: len(s) - len(s.lstrip())]


def _width(indent: str) -> int:
    return len(indent.expandtabs(4))


def _common_shift(parent_lines: list[str], diff_lines: list[str]) -> tuple[int, str] | None:
    """``(delta, unit)``: every non-blank parent line is indented ``delta`` columns more than
    its diff line (tabs count 4), and ``unit`` is the parent's indentation character; None if
    the delta differs between lines (then the match is not a pure indentation drift)."""
    delta = None
    unit = " "
    for p, d in zip(parent_lines, diff_lines):
        if not p.strip():
            continue
        if _indent(p).startswith("\t"):
            unit = "\t"
        this = _width(_indent(p)) - _width(_indent(d))
        if delta is None:
            delta = this
        elif delta != this:
            return None
    return (delta or 0, unit)


def _reindent(after: list[str], shift: str | tuple[int, str]) -> list[str]:
    """Added lines re-indented by the drift found when locating the hunk."""
    if not shift:
        return list(after)
    delta, unit = shift
    out = []
    for line in after:
        if not line.strip():
            out.append(line)
            continue
        width = max(0, _width(_indent(line)) + delta)
        indent = "\t" * (width // 4) + " " * (width % 4) if unit == "\t" else " " * width
        out.append(indent + line.lstrip())
    return out
