"""Language-model mutation operators: diff, fill-in-the-middle, rewrite (prompt mutation), crossover.

Each operator turns a batch of parent groups into prompts, sends them to its
backend in one :meth:`~mutators.backends.Backend.generate` call, and turns
each completion into a child with a status. A child the operator could not
build is a proposal with ``source=None`` (or the parent's source for
``no_op``) and a status saying why; it is recorded, never dropped:

=====================  ===========================================================
status                 meaning
=====================  ===========================================================
``ok``                 a new program (for diffs: every hunk applied); goes to the
                       engine's syntax check (``syntax_error`` if it fails), then
                       to a sandbox
``no_op``              the completion reproduces the parent
``malformed``          the completion has no usable diff / code block / body, or
                       was cut at ``max_new_tokens`` mid-edit
``context_not_found``  (diff) a hunk's context is not in the parent
``empty_middle``       (FIM) the model wrote nothing (or only the suffix again)
``prompt_too_long``    the prompt, windowed as far as the operator can, does not
                       fit the model's context with ``max_new_tokens``
``model_error``        the backend failed for this child (e.g. HTTP retries exhausted)
=====================  ===========================================================

``Proposal.meta`` keeps the operator's details (diff status, span, style...),
the completion's finish reason and, unless ``record_completion=False``, the
raw completion (first 4000 characters), so failures can be inspected in the
run store (``info.mutation``).
"""

from __future__ import annotations

import difflib
import inspect
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from elm.mutator import Mutator, TrainingExample
from elm.types import MutationStatus, Parent, Proposal, TaskContext
from mutators import prompts as P
from mutators.backends import Backend, Completion, Prompt, Sampling, build_backend, release_backend
from mutators.diff import DiffStatus, apply_diff
from mutators.fim import FORMATS, SPAN_KINDS, choose_span, trim_suffix_overlap
from mutators.windows import function_lines, grow_window, renumber_anchor, shrink_window

__all__ = ["CrossoverMutator", "DiffMutator", "FIMMutator", "LMMutator", "RewriteMutator"]

_COMPLETION_CHARS = 4000
_SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k")


@dataclass(frozen=True)
class _Plan:
    """What an operator needs to turn one completion into a child."""

    prompt: Prompt | None  # None: no request (``failure`` says why)
    context: Any = None
    failure: str = ""
    meta: Mapping[str, Any] = None  # type: ignore[assignment]
    stops: tuple[str, ...] | None = None  # this child's stop strings (None: the operator's)
    too_long: bool = False  # no request because the prompt does not fit the model's context


class LMMutator(Mutator):
    """Base class: batching, seeds, token/time accounting and statuses for a model-backed operator.

    Args:
        backend: a :class:`~mutators.backends.Backend`, or its config mapping
            (``{kind: hf, model: ..., ...}``, see :func:`~mutators.backends.build_backend`).
        sampling: ``{max_new_tokens, temperature, top_p, top_k}`` (missing keys: defaults).
        name: name recorded with each child (default: the class's).
        record_completion: keep the raw completion in ``Proposal.meta``.
    """

    name: ClassVar[str] = "lm"

    def __init__(self, *, backend: Backend | Mapping[str, Any], sampling: Mapping[str, Any] | None = None,
                 name: str | None = None, record_completion: bool = True) -> None:
        sampling = dict(sampling or {})
        unknown = set(sampling) - set(_SAMPLING_KEYS)
        if unknown:
            raise ValueError(f"sampling has unknown keys {sorted(unknown)}; allowed: {list(_SAMPLING_KEYS)}")
        self.sampling = Sampling(**{k: v for k, v in sampling.items() if v is not None})
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"name must be a non-empty string or None, got {name!r}")
            self.name = name
        self.record_completion = bool(record_completion)
        self._owns_backend = not isinstance(backend, Backend)
        self.backend = build_backend(backend) if self._owns_backend else backend

    # -------------------------------------------------------------- subclass hooks

    @abstractmethod
    def _plan(self, group: Sequence[Parent], task: TaskContext, rng: np.random.Generator) -> _Plan:
        """The prompt for one child (or a failure)."""

    @abstractmethod
    def _child(self, plan: _Plan, group: Sequence[Parent], text: str,
               completion: Completion) -> tuple[str | None, str, dict]:
        """``(source, status, meta)`` of the child built from a completion's text."""

    def _stops(self) -> tuple[str, ...]:
        return ()

    def _fit(self, plan: _Plan, group: Sequence[Parent], room: int) -> _Plan | None:
        """A plan whose prompt takes at most ``room`` tokens (e.g. the parent windowed around the
        edit), or None when this operator cannot shorten it (the child is then ``prompt_too_long``)."""
        return None

    def _tokens(self, prompt: Prompt) -> int | None:
        return self.backend.prompt_tokens(prompt)

    def _guard(self, plans: list[_Plan], groups: Sequence[Sequence[Parent]]) -> list[_Plan]:
        """Plans whose prompts fit the backend's context with ``max_new_tokens`` (windowed by :meth:`_fit`),
        or a failure saying the prompt is too long; unchanged where the backend states no context length."""
        context = getattr(self.backend, "context_length", None)
        if context is None:
            return plans
        room = context - self.sampling.max_new_tokens
        out = []
        for plan, group in zip(plans, groups):
            n = None if plan.prompt is None else self._tokens(plan.prompt)
            if n is None or n <= room:
                out.append(plan)
                continue
            fitted = self._fit(plan, group, room) if room > 0 else None
            if fitted is None:
                out.append(_Plan(prompt=None, failure=f"prompt of {n} tokens + max_new_tokens "
                                 f"{self.sampling.max_new_tokens} > context length {context}",
                                 meta={**dict(plan.meta or {}), "prompt_tokens": n}, too_long=True))
            else:
                out.append(replace(fitted, meta={**dict(fitted.meta or {}), "prompt_tokens_unwindowed": n}))
        return out

    # ---------------------------------------------------------------------- API

    def _plan_inspired(self, group: Sequence[Parent], others: Sequence[Parent], task: TaskContext,
                       rng: np.random.Generator) -> _Plan:
        """The prompt for one child that also shows ``others`` (inspirations, lowest fitness first).
        Default: operators whose format shows one program ignore them."""
        return self._plan(group, task, rng)

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int,
               inspirations: Sequence[Sequence[Parent]] | None = None) -> list[Proposal]:
        """One child per parent group (see the module docstring for statuses); one backend call per batch.
        ``inspirations``: per child, other elites to show (operators configured with ``inspirations``)."""
        rng = np.random.default_rng(seed)
        for index, group in enumerate(parents):
            if len(group) < 1:
                raise ValueError(f"parent group {index} is empty; each group needs at least one Parent")
        shown = list(inspirations or [])
        plans = self._guard([self._plan_inspired(list(group), list(shown[i]), task, rng) if i < len(shown) and shown[i]
                             else self._plan(list(group), task, rng) for i, group in enumerate(parents)], parents)
        asked = [i for i, plan in enumerate(plans) if plan.prompt is not None]
        model_seed = int(rng.integers(2**31 - 1))
        # one backend call per set of stop strings (normally a single call for the whole batch)
        by_stops: dict[tuple[str, ...], list[int]] = {}
        for i in asked:
            by_stops.setdefault(plans[i].stops if plans[i].stops is not None else self._stops(), []).append(i)
        by_index = {}
        for k, (stops, index) in enumerate(by_stops.items()):
            completions = self.backend.generate([plans[i].prompt for i in index],
                                                sampling=replace(self.sampling, stop=stops), seed=model_seed + k)
            if len(completions) != len(index):
                raise RuntimeError(f"backend {self.backend.label} returned {len(completions)} completions "
                                   f"for {len(index)} prompts")
            by_index.update(zip(index, completions))
        out = []
        for i, (group, plan) in enumerate(zip(parents, plans)):
            ids = tuple(p.id for p in group[: self.parents_per_child])
            meta = dict(plan.meta or {})
            completion = by_index.get(i)
            if completion is None:
                status = MutationStatus.PROMPT_TOO_LONG if plan.too_long else MutationStatus.MALFORMED
                out.append(Proposal(source=None, parent_ids=ids, mutator=self.name, status=status,
                                    meta={**meta, "error": plan.failure}))
                continue
            meta.update(finish=completion.finish, backend=self.backend.label, model_version=self.backend.version)
            if self.record_completion:
                meta["completion"] = completion.text[:_COMPLETION_CHARS]
            if completion.finish in ("error", "prompt_too_long"):
                source = None
                status = MutationStatus.MODEL_ERROR if completion.finish == "error" else MutationStatus.PROMPT_TOO_LONG
                meta["error"] = completion.error
            else:
                prompt = plan.prompt
                prefill = getattr(prompt, "prefill", "") if self.backend.supports_prefill else ""
                source, status, extra = self._child(plan, group, prefill + completion.text, completion)
                meta.update(extra)
            out.append(Proposal(source=source, parent_ids=ids, mutator=self.name, status=status,
                                tokens_in=completion.tokens_in, tokens_out=completion.tokens_out,
                                model_seconds=completion.seconds, meta=meta))
        return out

    def model_version(self) -> str | None:
        return self.backend.version

    def load_adapter(self, path: str) -> str:
        """The backend loads the adapter (a backend shared with other operators is swapped for all)."""
        return self.backend.load_adapter(path)

    def close(self) -> None:
        if self._owns_backend and self.backend is not None:
            release_backend(self.backend)
            self.backend = None


def _changed(child: str, parent: str) -> bool:
    return child.strip() != parent.strip()


def _option(cls: type, node: Mapping[str, Any], key: str) -> Any:
    """``node[key]``, or the constructor's default when the node leaves it out or null."""
    value = node.get(key)
    if value is not None:
        return value
    default = inspect.signature(cls.__init__).parameters[key].default
    return None if default is inspect.Parameter.empty else default


def _lines(source: str) -> list[str]:
    """``source``'s lines split at ``\\n`` only, as the operators split a completion (``str.splitlines``
    also splits at form feeds and other separators a model may write inside a line)."""
    lines = [line + "\n" for line in source.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    elif not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _diff_prompt(file_name: str, parent: str, message: str, anchor: str = "") -> str:
    text = f"<NME> {file_name}\n<BEF> {parent.rstrip(chr(10))}\n<MSG> {message}\n<DFF>"
    return text + (f" {anchor}\n" if anchor else "")


# ----------------------------------------------------------------------------- diff


class DiffMutator(LMMutator):
    """Diff models (CarperAI diff-codegen-350m v1/v2): the model writes a unified diff of the parent.

    Prompt (the model card's training format; the tags are plain text, not special tokens)::

        <NME> {file_name}
        <BEF> {parent without its final newline}
        <MSG> {commit message}
        <DFF>

    With ``hunk_header=True`` the prompt continues `` @@ -a,n +a,n @@\\n`` for a
    random range of lines of the entry function, which anchors the edit
    there. The completion is cut at the next record (``<NME>``, ``<BEF>``,
    ``<MSG>``, ``<DFF>``) or EOS, then applied with
    :func:`mutators.diff.apply_diff` (all hunks or none). ``meta.diff_status``
    is ``applied`` / ``no_op`` / ``malformed`` / ``context_not_found``; an
    applied diff's proposal has status ``ok``.

    Args:
        file_name: the ``<NME>`` field.
        messages: commit messages; one is drawn per child.
        hunk_header: anchor the edit with a hunk header (see above).
        max_anchor_lines: lines covered by an anchoring header (1..this).
    """

    name: ClassVar[str] = "diff"
    _STOPS = ("<NME>", "\n<BEF>", "\n<MSG>", "\n<DFF>", "<|endoftext|>")

    def __init__(self, *, backend: Backend | Mapping[str, Any], sampling: Mapping[str, Any] | None = None,
                 file_name: str = "program.py",
                 messages: Sequence[str] = ("Fixed bugs", "Improved the packing", "Changed the layout constants"),
                 hunk_header: bool = False, max_anchor_lines: int = 6, name: str | None = None,
                 record_completion: bool = True) -> None:
        messages = tuple(str(m) for m in messages)
        if not messages or any(not m.strip() or "\n" in m for m in messages):
            raise ValueError(f"messages must be non-empty one-line commit messages, got {messages!r}")
        if not isinstance(file_name, str) or not file_name or "\n" in file_name:
            raise ValueError(f"file_name must be a one-line file name, got {file_name!r}")
        if isinstance(max_anchor_lines, bool) or not isinstance(max_anchor_lines, int) or max_anchor_lines < 1:
            raise ValueError(f"max_anchor_lines must be an int >= 1, got {max_anchor_lines!r}")
        super().__init__(backend=backend, sampling=sampling, name=name, record_completion=record_completion)
        self.file_name = file_name
        self.messages = messages
        self.hunk_header = bool(hunk_header)
        self.max_anchor_lines = max_anchor_lines

    def prompt(self, parent: str, message: str, anchor: str = "") -> str:
        """The exact prompt text (``anchor`` is a hunk header line, or empty)."""
        return _diff_prompt(self.file_name, parent, message, anchor)

    @classmethod
    def training_example(cls, node, *, parents, child, task, meta):
        """The child's change as the diff the model would write: the prompt with the child's commit
        message (the first configured one for another operator's child), the completion one
        ``@@`` hunk per change with 3 lines of context, checked to apply back to the child.
        None with ``hunk_header`` (the anchor depends on the edit) or when nothing changed."""
        if _option(cls, node, "hunk_header"):
            return None
        parent = parents[0].source
        if not _changed(child, parent):
            return None
        message = meta.get("message") or tuple(_option(cls, node, "messages"))[0]
        hunks = list(difflib.unified_diff(_lines(parent), _lines(child), n=3))[2:]  # without ---/+++
        completion = " " + "".join(hunks)
        applied = apply_diff(parent, completion.lstrip(" ")).source
        if applied is None or applied.strip() != child.strip():
            return None  # a change difflib writes that apply_diff reads otherwise: no example
        return TrainingExample(prompt=_diff_prompt(_option(cls, node, "file_name"), parent, message),
                               completion=completion, format=f"{cls.name}")

    def _stops(self) -> tuple[str, ...]:
        return self._STOPS

    def _plan(self, group, task, rng):
        parent = group[0]
        message = self.messages[int(rng.integers(len(self.messages)))]
        anchor = ""
        focus = function_lines(parent.source, task.entry_point)  # what a window must show (0-based, end excl.)
        if self.hunk_header:
            span = choose_span(parent.source, kind="lines", rng=rng, function=task.entry_point,
                               max_lines=self.max_anchor_lines)
            if span is not None:
                count = span.last_line - span.first_line + 1
                anchor = f"@@ -{span.first_line},{count} +{span.first_line},{count} @@"
                focus = (span.first_line - 1, span.last_line)
        context = _DiffWindow(anchor=anchor, message=message, focus=focus, anchor_lines=focus if anchor else None)
        return _Plan(prompt=self.prompt(parent.source, message, anchor), context=context,
                     meta={"message": message, **({"anchor": anchor} if anchor else {})})

    def _fit(self, plan, group, room):
        """The parent windowed to whole lines around the entry function (or the anchored lines)."""
        ctx: _DiffWindow = plan.context
        if ctx.focus is None:
            return None
        lines = group[0].source.splitlines(keepends=True)
        anchor_of = lambda start: ctx.anchor and renumber_anchor(ctx.anchor_lines, start)  # noqa: E731
        fixed = self._tokens(self.prompt("", ctx.message, anchor_of(0)))
        window = grow_window(lines, ctx.focus, room - fixed, self._tokens)
        while window is not None:
            start, end = window
            prompt = self.prompt("".join(lines[start:end]), ctx.message, anchor_of(start))
            if self._tokens(prompt) <= room:
                meta = {**dict(plan.meta or {}), "window": [start + 1, end]}
                if ctx.anchor:
                    meta["anchor"] = anchor_of(start)
                return replace(plan, prompt=prompt, context=replace(ctx, anchor=anchor_of(start), start=start, end=end),
                               meta=meta)
            window = shrink_window(window, ctx.focus)
        return None

    def _child(self, plan, group, text, completion):
        ctx: _DiffWindow = plan.context
        diff = (ctx.anchor + "\n" + text) if ctx.anchor else text
        lines = group[0].source.splitlines(keepends=True)
        end = len(lines) if ctx.end is None else ctx.end
        window = "".join(lines[ctx.start:end])
        result = apply_diff(window, diff.lstrip(" "), truncated=completion.finish == "length")
        meta = {"diff_status": result.status.value, "hunks": result.hunks}
        if result.detail:
            meta["detail"] = result.detail
        if result.status is DiffStatus.APPLIED:
            return "".join(lines[:ctx.start]) + result.source + "".join(lines[end:]), MutationStatus.OK, meta
        if result.status is DiffStatus.NO_OP:
            return group[0].source, MutationStatus.NO_OP, meta
        return None, MutationStatus(result.status.value), meta


@dataclass(frozen=True)
class _DiffWindow:
    """The part of the parent a diff prompt shows: lines ``start:end`` (0-based; ``end`` None = to the end)."""

    anchor: str
    message: str
    focus: tuple[int, int] | None  # lines a window must keep (the entry function or the anchored lines)
    anchor_lines: tuple[int, int] | None = None
    start: int = 0
    end: int | None = None


# ------------------------------------------------------------------------------ FIM


class FIMMutator(LMMutator):
    """Fill-in-the-middle: cut a span out of the parent and let the model write it again.

    Args:
        format: ``santacoder``, ``fim_neox``, ``refact`` or ``refact_psm`` (see :mod:`mutators.fim`).
        order: override the format's order (``"psm"``/``"spm"``), e.g. PSM for Refact.
        spans: weights of the span kinds ``body``/``block``/``lines`` drawn per child.
        max_lines: longest ``lines`` span.
        entry_point_only: cut spans from the task's entry function when the
            parent defines it (otherwise from any function).
        check_tokens: at construction, assert that the backend's tokenizer
            maps every marker to its expected id (backends with a tokenizer only).
        expected_ids: marker -> id to check instead of the real vocabulary's
            (for test tokenizers).

    The child is ``prefix + middle + suffix``; the middle is the completion
    cut at EOS or any FIM marker, given a final newline, without its last
    lines when they repeat the start of the suffix (:func:`trim_suffix_overlap`,
    ``meta.suffix_overlap_lines``). A middle cut at ``max_new_tokens`` is
    ``malformed``; an empty (or only blank, or only repeated) middle is
    ``empty_middle``; an unchanged program is ``no_op``.
    """

    name: ClassVar[str] = "fim"

    def __init__(self, *, backend: Backend | Mapping[str, Any], format: str, order: str | None = None,
                 spans: Mapping[str, float] | None = None, max_lines: int = 8, entry_point_only: bool = True,
                 check_tokens: bool = True, expected_ids: Mapping[str, int] | None = None,
                 sampling: Mapping[str, Any] | None = None, name: str | None = None,
                 record_completion: bool = True) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
        fmt = FORMATS[format]
        if order is not None:
            if order not in ("psm", "spm"):
                raise ValueError(f"order must be 'psm', 'spm' or null, got {order!r}")
            fmt = fmt.with_order(order) if order != fmt.order else fmt
        spans = dict(spans or {"block": 0.5, "lines": 0.3, "body": 0.2})
        bad = set(spans) - set(SPAN_KINDS)
        if bad:
            raise ValueError(f"spans has unknown kinds {sorted(bad)}; allowed: {list(SPAN_KINDS)}")
        weights = np.array([float(spans[k]) for k in spans])
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"spans weights must be finite, >= 0 and not all 0, got {spans}")
        if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
            raise ValueError(f"max_lines must be an int >= 1, got {max_lines!r}")
        super().__init__(backend=backend, sampling=sampling, name=name, record_completion=record_completion)
        self.format = fmt
        self._kinds = list(spans)
        self._weights = weights / weights.sum()
        self.max_lines = max_lines
        self.entry_point_only = bool(entry_point_only)
        tokenizer = getattr(self.backend, "tokenizer", None)
        self.marker_ids = fmt.check_tokenizer(tokenizer, expected=expected_ids) if check_tokens and tokenizer else {}

    def _stops(self) -> tuple[str, ...]:
        return self.format.stops

    def _plan(self, group, task, rng):
        kind = self._kinds[int(rng.choice(len(self._kinds), p=self._weights))]
        span = choose_span(group[0].source, kind=kind, rng=rng,
                           function=task.entry_point if self.entry_point_only else None, max_lines=self.max_lines)
        if span is None:
            return _Plan(prompt=None, failure="parent does not parse or has no function body to fill",
                         meta={"span": kind})
        return _Plan(prompt=self.format.prompt(span.prefix, span.suffix), context=span,
                     meta={"span": kind, "lines": [span.first_line, span.last_line], "format": self.format.name})

    def _fit(self, plan, group, room):
        """The prompt with only the prefix's last and the suffix's first lines (the child keeps the whole parent)."""
        span = plan.context
        pre = span.prefix.splitlines(keepends=True)
        lines = pre + span.suffix.splitlines(keepends=True)
        # prefix lines are lines[:len(pre)], suffix lines lines[len(pre):]; the line just before the hole
        # is always shown (a prompt of bare markers is not a FIM prompt)
        hole = (max(len(pre) - 1, 0), len(pre))
        window = grow_window(lines, hole, room - self._tokens(self.format.prompt("", "")), self._tokens)
        while window is not None:
            start, end = window
            prompt = self.format.prompt("".join(lines[start:len(pre)]), "".join(lines[len(pre):end]))
            if self._tokens(prompt) <= room:
                return replace(plan, prompt=prompt, meta={**dict(plan.meta or {}),
                                                          "window": [start + 1,
                                                                     end + span.last_line - span.first_line + 1]})
            window = shrink_window(window, hole)
        return None

    def _child(self, plan, group, text, completion):
        span = plan.context
        if completion.finish == "length":
            return None, MutationStatus.MALFORMED, {"detail": "middle cut at max_new_tokens"}
        if not text.strip():
            return None, MutationStatus.EMPTY_MIDDLE, {"detail": "the model wrote nothing for the hole"}
        middle = text if text.endswith("\n") else text + "\n"
        middle, overlap = trim_suffix_overlap(middle, span.suffix)
        extra = {"suffix_overlap_lines": overlap} if overlap else {}
        if not middle.strip():
            return None, MutationStatus.EMPTY_MIDDLE, {**extra, "detail": "the middle only repeats the suffix"}
        child = span.prefix + middle + span.suffix
        if not _changed(child, group[0].source):
            return group[0].source, MutationStatus.NO_OP, extra
        return child, MutationStatus.OK, {**extra, "middle_lines": middle.count("\n")}


# ------------------------------------------------------------------- rewrite / crossover

_BODY_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\n@", "\n#", "\nprint(", "\nimport ", "\nfrom ",
               "\n```", "<|endoftext|>", "<|im_end|>")
_LINE_STOPS = ("\n", "<|endoftext|>", "<|im_end|>")
#: styles that can show other elites (inspirations) beside the parent: those that show whole versions
INSPIRED_STYLES = ("chat", "body", "body_chat")

_INSTRUCTIONS = {
    "chat": "Write an improved version of the program that scores higher.",
    "body": "Improved version of {versions}.",
    "body_chat": "Improved version of {versions}.",
    "region": "Improve these lines so that the program scores higher.",
    "lines": "",
}


class RewriteMutator(LMMutator):
    """ELM's prompt mutation: the model writes a new version of the parent's entry function.

    Args:
        style: ``chat``, ``body``, ``body_chat``, ``region`` or ``lines`` (see
            :mod:`mutators.prompts`). All but ``chat`` keep the entry function's signature by
            construction; ``chat`` returns a whole program.
        instruction: the instruction (``body``: the new version's docstring,
            where ``{versions}`` names the parent versions shown). None: the
            style's default.
        max_region_lines: longest region of the ``region`` and ``lines`` styles.
        body_lines: ``body``/``body_chat``: the new body starts with this many
            (non-blank) lines of the first parent's body, given in the prompt
            (0: only the header), so the model continues a body rather than
            ending the function at once.
        parents: parents shown per child (1; :class:`CrossoverMutator` uses 2+).
        show_parent: ``lines``: show the parent's whole entry function before the
            copy being continued. Off by default: SmolLM2-135M then copies the
            parent's line back in most children (13 of 16 ``no_op``), and the
            prompt is ~3x longer (docs/mutators.md).
        inspirations: other elites shown per child besides the parents (0: none), chosen by the
            engine (the best and diverse ones, :func:`elm.inspirations.choose_inspirations`) and
            shown as earlier versions, lowest score first: ``body``/``body_chat`` as FunSearch's
            ``name_v0``, ``name_v1``... before the parents' versions, ``chat`` as programs with their
            scores. Styles ``lines`` and ``region`` edit one program's own text and take none.
    """

    name: ClassVar[str] = "rewrite"
    parents_per_child: ClassVar[int] = 1

    def __init__(self, *, backend: Backend | Mapping[str, Any], style: str = "body", instruction: str | None = None,
                 max_region_lines: int = 6, body_lines: int = 1, parents: int | None = None,
                 show_parent: bool = False, inspirations: int = 0, sampling: Mapping[str, Any] | None = None,
                 name: str | None = None, record_completion: bool = True) -> None:
        if style not in P.STYLES:
            raise ValueError(f"style must be one of {P.STYLES}, got {style!r}")
        if isinstance(inspirations, bool) or not isinstance(inspirations, int) or inspirations < 0:
            raise ValueError(f"inspirations must be an int >= 0, got {inspirations!r}")
        if inspirations and style not in INSPIRED_STYLES:
            raise ValueError(f"style {style!r} shows one program's own text; inspirations (other elites in the "
                             f"prompt) need one of {INSPIRED_STYLES}, or inspirations=0")
        self.inspirations = inspirations
        if parents is not None:
            if isinstance(parents, bool) or not isinstance(parents, int) or parents < 1:
                raise ValueError(f"parents must be an int >= 1, got {parents!r}")
            self.parents_per_child = parents  # instance override of the class default
        if style in ("region", "lines") and self.parents_per_child > 1:
            raise ValueError(f"style {style!r} rewrites one parent's lines; use 'body' or 'chat' for crossover")
        if isinstance(max_region_lines, bool) or not isinstance(max_region_lines, int) or max_region_lines < 1:
            raise ValueError(f"max_region_lines must be an int >= 1, got {max_region_lines!r}")
        super().__init__(backend=backend, sampling=sampling, name=name, record_completion=record_completion)
        self.style = style
        self.instruction = self._instruction(style, instruction)
        self.max_region_lines = max_region_lines
        if isinstance(body_lines, bool) or not isinstance(body_lines, int) or body_lines < 0:
            raise ValueError(f"body_lines must be an int >= 0, got {body_lines!r}")
        self.body_lines = body_lines
        if not isinstance(show_parent, bool):
            raise ValueError(f"show_parent must be true or false, got {show_parent!r}")
        self.show_parent = show_parent

    @classmethod
    def _instruction(cls, style: str, instruction: str | None) -> str:
        return instruction if instruction is not None else _INSTRUCTIONS[style]

    @classmethod
    def training_example(cls, node, *, parents, child, task, meta):
        """The child as this operator's style would have asked for and written it.

        ``lines``: the child must differ from the parent in exactly one one-line assignment of
        the entry function (the same target), the prompt is the program up to that line's
        ``target =`` and the completion the new right-hand side with its line end (for a function
        without such lines: the changed statement lines, same count). ``body``/``body_chat``: the
        child must differ only inside the entry function's body and start it with the lines the
        prompt gives; the completion is the rest of the body (``body_chat``: then the closing
        fence). ``chat``: the completion is the whole child and the closing fence. ``region``:
        None (the region is drawn, not recoverable from the change).
        """
        style = _option(cls, node, "style")
        name = task.entry_point
        k = node.get("parents") or cls.parents_per_child
        if style == "region" or len(parents) < k or not _changed(child, parents[0].source):
            return None
        group = [p.source for p in parents[:k]]
        instruction = cls._instruction(style, node.get("instruction"))
        fmt = f"{cls.name}/{style}"
        if style == "chat":
            prompt = P.chat_prompt(group, task, instruction)
            return TrainingExample(prompt=prompt.prefill, completion=child.rstrip("\n") + "\n```",
                                   messages=prompt.messages, format=fmt)
        entries = [P.find_entry(source, name) for source in group]
        if any(e is None for e in entries):
            return None
        entry, old, got = entries[0], list(entries[0].lines), _lines(child)
        if style == "lines":
            if len(got) != len(old):
                return None
            changed = [i for i, (a, b) in enumerate(zip(old, got)) if a != b]
            if not changed or changed[0] < entry.body_start or changed[-1] >= entry.end:
                return None
            heads = P.assignment_lines(entry)
            if heads:
                head = next((h for line, h, _ in heads if [line] == changed), None)
                if head is None or not got[changed[0]].startswith(head):
                    return None
                return TrainingExample(
                    prompt=P.lines_prompt(entry, name, changed[0], head, _option(cls, node, "show_parent")),
                    completion=got[changed[0]][len(head):], format=fmt)
            first, last = changed[0], changed[-1] + 1
            return TrainingExample(prompt=P.lines_prompt(entry, name, first, "", _option(cls, node, "show_parent")),
                                   completion="".join(got[first:last]), format=fmt)
        # body / body_chat: only the entry function's body may differ
        new = P.find_entry(child, name)
        if new is None:
            return None
        if got[:new.body_start] != old[:entry.body_start] or got[new.end:] != old[entry.end:]:
            return None
        start = P.body_start(entry, _option(cls, node, "body_lines"))
        body = "".join(got[new.body_start:new.end])
        if not body.startswith(start) or body == start:
            return None
        if style == "body":
            return TrainingExample(prompt=P.body_prompt(entries, name, instruction, start),
                                   completion=body[len(start):], format=fmt)
        prompt = P.body_chat_prompt(entries, name, task, instruction, start)
        return TrainingExample(prompt=prompt.prefill, completion=body[len(start):] + "```",
                               messages=prompt.messages, format=fmt)

    def _stops(self) -> tuple[str, ...]:
        if self.style in ("body", "lines"):
            return _BODY_STOPS
        if self.style == "body_chat":  # the body ends at a dedent (cut afterwards) or the closing fence
            return ("```", "\ndef ", "\nclass ", "\nif __name__", "<|im_end|>", "<|endoftext|>")
        # chat/region replies are prefilled with an opening fence: the next fence closes the code
        return ("```",) if self.backend.supports_prefill else ()

    def _plan(self, group, task, rng):
        group = list(group[: self.parents_per_child])
        name = task.entry_point
        meta = {"style": self.style}
        if self.style == "chat":
            return _Plan(prompt=P.chat_prompt([p.source for p in group], task, self.instruction), meta=meta)
        entries = [P.find_entry(p.source, name) for p in group]
        if any(e is None for e in entries):
            return _Plan(prompt=None, failure=f"a parent does not parse or has no multi-line top-level def {name}",
                         meta=meta)
        if self.style in ("body", "body_chat"):
            start = P.body_start(entries[0], self.body_lines)
            prompt = P.body_prompt(entries, name, self.instruction, start) if self.style == "body" else \
                P.body_chat_prompt(entries, name, task, self.instruction, start)
            return _Plan(prompt=prompt, context=(entries[0], start), meta=meta)
        if self.style == "lines":
            target = P.choose_assignment(entries[0], rng)
            if target is not None:  # a new right-hand side for one assignment line; stops at its end
                line, head = target
                return _Plan(prompt=P.lines_prompt(entries[0], name, line, head, self.show_parent),
                             context=(entries[0], line, line + 1, head), stops=_LINE_STOPS,
                             meta={**meta, "region": [line + 1, line + 1], "head": head.strip()})
            first, last = P.choose_statement(entries[0], rng)  # no such line: whole statement lines
            return _Plan(prompt=P.lines_prompt(entries[0], name, first, "", self.show_parent),
                         context=(entries[0], first, last, ""), meta={**meta, "region": [first + 1, last]})
        first, last = P.choose_region(entries[0], rng, self.max_region_lines)
        return _Plan(prompt=P.region_prompt(entries[0], first, last, task, self.instruction),
                     context=(entries[0], first, last), meta={**meta, "region": [first + 1, last]})

    def _plan_inspired(self, group, others, task, rng):
        group = list(group[: self.parents_per_child])
        name = task.entry_point
        meta = {"style": self.style, "inspirations": [o.id for o in others]}
        if self.style == "chat":
            return _Plan(prompt=P.chat_prompt([p.source for p in group], task, self.instruction,
                                              inspirations=[(o.source, o.fitness) for o in others],
                                              scores=[p.fitness for p in group]), meta=meta)
        entries = [P.find_entry(p.source, name) for p in group]
        if any(e is None for e in entries):
            return _Plan(prompt=None, failure=f"a parent does not parse or has no multi-line top-level def {name}",
                         meta=meta)
        shown = [(o, e) for o in others if (e := P.find_entry(o.source, name)) is not None]
        meta["inspirations"] = [o.id for o, _ in shown]
        versions = [e for _, e in shown] + entries  # FunSearch's order: inspirations, then the parents
        base = len(shown)
        start = P.body_start(entries[0], self.body_lines)
        prompt = P.body_prompt(versions, name, self.instruction, start, base=base) if self.style == "body" else \
            P.body_chat_prompt(versions, name, task, self.instruction, start, base=base)
        return _Plan(prompt=prompt, context=(entries[0], start), meta=meta)

    def _child(self, plan, group, text, completion):
        parent = group[0].source
        extra: dict = {}
        if self.style in ("body", "body_chat"):
            entry, start = plan.context
            if self.style == "body_chat":
                text = completion.text  # the reply continues the prefill (fence, def, docstring, body start)
            text = start + text
            if completion.finish == "length":
                # a body cut mid-line loses its last (partial) line; complete lines are kept
                text = text[: text.rfind("\n") + 1]
                extra["truncated"] = True
            body = P.body_from_completion(text, entry.indent)
            if not body.strip():
                return None, MutationStatus.MALFORMED, {**extra, "detail": "the completion wrote no indented body"}
            child = entry.with_body(body)
        elif self.style == "lines" and plan.context[3]:
            entry, line, _, head = plan.context
            if completion.finish == "length":
                return None, MutationStatus.MALFORMED, {"detail": "the line was cut at max_new_tokens"}
            value = text.split("\n", 1)[0].rstrip()
            if not value.strip():
                return None, MutationStatus.MALFORMED, {"detail": "the completion wrote no right-hand side"}
            if not value.startswith((" ", "\t")):
                value = " " + value
            child = "".join(entry.lines[:line]) + head + value + "\n" + "".join(entry.lines[line + 1:])
        elif self.style == "lines":
            entry, first, last, _ = plan.context
            got = text.splitlines(keepends=True)
            while got and not got[0].strip() and got[0].endswith("\n"):
                got.pop(0)  # a blank line first is layout, not one of the new lines
            if got and not got[-1].endswith("\n") and completion.finish != "length":
                got[-1] += "\n"  # ended by a stop string or EOS: the last line is whole
            new = [line for line in got if line.endswith("\n")][: last - first]  # a cut last line is dropped
            if not any(line.strip() for line in new):
                return None, MutationStatus.MALFORMED, {"detail": "the completion wrote no complete line"}
            # k new lines replace exactly k lines of the parent, so the rest stays aligned
            child = "".join(entry.lines[:first]) + "".join(new) + "".join(entry.lines[first + len(new):])
            extra["replaced_lines"] = len(new)
        elif completion.finish == "length":
            return None, MutationStatus.MALFORMED, {"detail": "completion cut at max_new_tokens"}
        else:
            code = P.extract_code(text)
            if code is None:
                return None, MutationStatus.MALFORMED, {"detail": "no code in the reply"}
            if self.style == "chat":
                child = code
            else:
                entry, first, last = plan.context
                child = P.splice_region(entry, first, last, code)
        if not _changed(child, parent):
            return parent, MutationStatus.NO_OP, extra
        return child, MutationStatus.OK, extra


class CrossoverMutator(RewriteMutator):
    """LMX-style crossover: several parents in one prompt, the model writes a new version.

    Same styles as :class:`RewriteMutator` except ``region``; ``parents``
    (default 2) parents are shown per child. With ``body`` the child is the
    first parent with its entry function's body replaced by the model's.
    """

    name: ClassVar[str] = "crossover"
    parents_per_child: ClassVar[int] = 2

    def __init__(self, *, backend: Backend | Mapping[str, Any], style: str = "body", instruction: str | None = None,
                 parents: int = 2, body_lines: int = 1, inspirations: int = 0,
                 sampling: Mapping[str, Any] | None = None, name: str | None = None,
                 record_completion: bool = True) -> None:
        if isinstance(parents, bool) or not isinstance(parents, int) or parents < 2:
            raise ValueError(f"crossover needs parents >= 2, got {parents!r}")
        super().__init__(backend=backend, style=style, instruction=instruction, parents=parents,
                         body_lines=body_lines, inspirations=inspirations, sampling=sampling, name=name,
                         record_completion=record_completion)

    @classmethod
    def _instruction(cls, style: str, instruction: str | None) -> str:
        if instruction is None and style == "body":
            return "Improved version combining the best ideas of {versions}."
        if instruction is None and style == "chat":
            return "Write a new program that combines the best ideas of these programs and scores higher."
        return super()._instruction(style, instruction)
