"""Genetic-programming mutator: the non-language-model baseline, editing the AST.

Each child is its parent with 1..``max_edits`` random edits applied to the
parsed syntax tree, then printed back with :func:`ast.unparse` (so a child
always parses; comments and original formatting are not preserved). Edits:

``constant``
    Perturb one numeric literal. A float ``v`` becomes ``|v * (1 + sigma*z)|``
    (``z`` standard normal, ``sigma = constant_sigma``; a literal ``0.0``
    becomes ``|sigma*z|``), rounded to 6 significant digits so programs stay
    readable. An int moves by a non-zero integer step of typical size
    ``max(1, sigma*|v|)`` and stays an int; a positive int never drops below 1
    and ``0`` can only grow, so ``range(5)`` never becomes ``range(-1)``.
    Literals in Python source are never negative (``-3`` is a unary minus
    applied to ``3``), so keeping the magnitude non-negative keeps the sign.
    Ints given as ``axis=``/``axes=`` keyword arguments are structural, not
    tunable, and are left alone (changing them only raises shape errors).
``operator``
    Swap one operator for its partner: ``+``/``-``, ``*``/``/`` (also in
    augmented assignments ``+=``/``-=``, ``*=``/``/=``), ``<``/``>``,
    ``<=``/``>=``, ``==``/``!=``. A ``+`` with a string literal operand is
    left alone (``-`` would make no sense there).
``duplicate``
    Copy one statement inside a function body (at any depth) and insert the
    copy right after it. ``def``/``class``, ``return``, imports, ``pass``,
    ``global``/``nonlocal`` and docstrings are never duplicated.
``delete``
    Remove one statement inside a function body (at any depth). A block left
    empty gets a ``pass``. ``def``/``class``, every ``return``, imports and
    docstrings are never deleted, so a function keeps its final ``return``.
    Nor is a statement that holds the first binding (in source order) of a
    name the function reads outside that statement, e.g. ``pts = []`` before
    ``pts.append(...)``: deleting it would almost surely raise ``NameError``.
    A later re-assignment such as ``x = refine(x)`` may be deleted.

``grow``
    Replace a variable or numeric literal that is an operand of an
    arithmetic operator, a unary minus or a comparison by a small expression
    around it, ``t + c*w``, ``t - c*w`` or ``t * (1 +/- c*w)``, with a new
    literal ``c`` and ``w`` nothing, a variable in scope, a product of two, or
    a parity ``v % 2`` (tree-based GP's subtree mutation, kept to forms that
    usually run; :mod:`mutators.gp_grow`). The only edit that adds structure
    and new constants to tune rather than re-tuning what is there. Weight 0.5
    by default (``p_grow``; ``p_grow=0`` gives GP as it was before this edit).

``crossover`` (only with ``p_crossover`` > 0)
    Instead of edits, a child may be its first parent with one top-level
    function or one assignment of a second parent (another elite, drawn by the
    run's parent selection), matched by name and target:
    :class:`~mutators.gp_crossover.GPCrossoverMutator`'s ``function`` and
    ``statement`` swaps at their default weights. The mutator then
    takes two parents per child; a pair with nothing to swap gets edits instead.
    Unlike a crossover lane beside a GP lane (``mutator=gp_with_crossover``), this
    keeps a run in one lane, so a seeded run stays reproducible.

Randomness comes only from ``np.random.default_rng(seed)`` of each
:meth:`GPMutator.mutate` call, so a batch is reproducible from its seed.
"""

from __future__ import annotations

import ast
import copy
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from elm.config import GPMutatorConfig
from elm.mutator import Mutator
from elm.types import MutationStatus, Parent, Proposal, TaskContext
from mutators.gp_grow import grow, grow_sites

_DEFAULTS = GPMutatorConfig()  # the one place of the defaults

__all__ = ["GPMutator"]

#: operator classes and the class each is swapped for
_BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
}
_CMPOP_SWAPS: dict[type, type] = {
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}
_OP_SYMBOLS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Lt: "<",
    ast.Gt: ">",
    ast.LtE: "<=",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}

#: statements never duplicated / never deleted
_NO_DUPLICATE = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Return,
    ast.Import,
    ast.ImportFrom,
    ast.Pass,
    ast.Global,
    ast.Nonlocal,
)
_NO_DELETE = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Return,
    ast.Import,
    ast.ImportFrom,
    ast.Global,
    ast.Nonlocal,
)

#: keyword arguments whose int values are structural, never perturbed (numpy's ``axis=1``)
_STRUCTURAL_KEYWORDS = frozenset({"axis", "axes"})

#: statement-list fields of compound statements
_BLOCK_FIELDS = ("body", "orelse", "finalbody")

# "grow" last: with its weight 0 the draws are those of GP before the grow edit existed
_EDIT_KINDS = ("constant", "operator", "duplicate", "delete", "grow")

#: attempts at producing a child that differs from its parent before giving up
_MAX_ATTEMPTS = 8


class GPMutator(Mutator):
    """Random AST edits of numeric constants, operators and statements.

    Args:
        constant_sigma: relative standard deviation of float perturbations
            (``0.1`` = 10 %); also scales the integer step. Must be > 0.
        p_constant: weight of the constant-perturbation edit.
        p_operator: weight of the operator-swap edit.
        p_duplicate: weight of the statement-duplication edit.
        p_delete: weight of the statement-deletion edit.
        p_grow: weight of the grow edit. Weights must be
            finite, >= 0 and not all 0; they are renormalised over the edit
            kinds that have a site in the current program.
        max_edits: each child gets ``rng.integers(1, max_edits + 1)`` edits.
        p_crossover: probability in [0, 1] that a child is a crossover of its
            first two parents rather than an edited copy of the first. Above 0
            the instance takes ``parents_per_child = 2`` (the second parent is
            drawn like the first); 0 keeps one parent per child and the same
            random stream as without the option.
        name: mutator name recorded with each proposal (default ``"gp"``).

    ``mutate`` ignores ``task``: the edits are syntactic. One child of a
    40-line program takes about 1-2 ms (parse, edits, ``ast.unparse``).
    """

    name: ClassVar[str] = "gp"
    parents_per_child: ClassVar[int] = 1
    checks_syntax: ClassVar[bool] = True  # children are unparsed from an AST, so they always parse

    def __init__(
        self,
        *,
        constant_sigma: float = _DEFAULTS.constant_sigma,
        p_constant: float = _DEFAULTS.p_constant,
        p_operator: float = _DEFAULTS.p_operator,
        p_duplicate: float = _DEFAULTS.p_duplicate,
        p_delete: float = _DEFAULTS.p_delete,
        p_grow: float = _DEFAULTS.p_grow,
        max_edits: int = _DEFAULTS.max_edits,
        p_crossover: float = _DEFAULTS.p_crossover,
        name: str | None = None,
    ) -> None:
        if (
            isinstance(constant_sigma, bool)
            or not isinstance(constant_sigma, (int, float))
            or not (math.isfinite(constant_sigma) and constant_sigma > 0)
        ):
            raise ValueError(f"constant_sigma must be a finite number > 0, got {constant_sigma!r}")
        sigma = float(constant_sigma)
        weights = {
            "p_constant": p_constant,
            "p_operator": p_operator,
            "p_duplicate": p_duplicate,
            "p_delete": p_delete,
            "p_grow": p_grow,
        }
        for key, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {w!r}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"at least one edit weight must be > 0, got {weights}")
        if isinstance(max_edits, bool) or not isinstance(max_edits, int) or max_edits < 1:
            raise ValueError(f"max_edits must be an int >= 1, got {max_edits!r}")
        if (
            isinstance(p_crossover, bool)
            or not isinstance(p_crossover, (int, float))
            or not (0.0 <= p_crossover <= 1.0)
        ):
            raise ValueError(f"p_crossover must be a number in [0, 1], got {p_crossover!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        self.constant_sigma = sigma
        self.max_edits = max_edits
        self.p_crossover = float(p_crossover)
        self._weights = np.array([float(w) for w in weights.values()], dtype=float)
        if name is not None:
            self.name = name  # instance override of the class default
        self._crossover = None
        if self.p_crossover > 0:
            # imported here: gp_crossover builds on this module's helpers
            from mutators.gp_crossover import GPCrossoverMutator

            self._crossover = GPCrossoverMutator(name=self.name)
            self.parents_per_child = 2  # instance override: the loop asks the instance

    def __repr__(self) -> str:
        p = ", ".join(f"p_{k}={w:g}" for k, w in zip(_EDIT_KINDS, self._weights))
        return (
            f"GPMutator(constant_sigma={self.constant_sigma:g}, {p}, "
            f"max_edits={self.max_edits}, p_crossover={self.p_crossover:g}, name={self.name!r})"
        )

    # ------------------------------------------------------------------ API

    def mutate(
        self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int
    ) -> list[Proposal]:
        """Write one child per parent group from the group's first parent (and, for a
        crossover child, its second).

        Returns ``len(parents)`` proposals in order. Status ``"ok"`` with
        ``meta["edits"]`` listing the edits (e.g. ``"const 0.5->0.53 at line
        4"``, or for a crossover child ``"function valid_radii from 17"``, with
        both parents' ids in ``parent_ids``); ``"malformed"`` with ``source=None`` when the parent does not
        parse; ``"no_op"`` with the parent's source when
        ``_MAX_ATTEMPTS`` attempts all printed the same program as the parent
        (e.g. a program with nothing to edit).

        Raises:
            ValueError: a parent group is empty.
        """
        rng = np.random.default_rng(seed)
        proposals = []
        for index, group in enumerate(parents):
            if len(group) == 0:
                raise ValueError(f"parent group {index} is empty; each group needs at least one Parent")
            if self._crossover is not None and rng.random() < self.p_crossover and len(group) > 1:
                child = self._crossover.child(group[0], group[1], rng)
                if child.status is MutationStatus.OK:
                    proposals.append(child)
                    continue
            proposals.append(self._mutate_one(group[0], rng))
        return proposals

    # ------------------------------------------------------------ internals

    def _mutate_one(self, parent: Parent, rng: np.random.Generator) -> Proposal:
        try:
            original = ast.parse(parent.source)
            baseline = ast.unparse(original)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            # ValueError: NUL bytes; RecursionError/MemoryError: absurdly deep nesting
            return Proposal(
                source=None,
                parent_ids=(parent.id,),
                mutator=self.name,
                status=MutationStatus.MALFORMED,
                meta={"error": f"parent does not parse: {type(exc).__name__}: {exc}"},
            )
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            tree = original if attempt == 1 else ast.parse(parent.source)  # fresh copy; faster than deepcopy
            n_edits = int(rng.integers(1, self.max_edits + 1))
            edits = [d for d in (self._edit(tree, rng) for _ in range(n_edits)) if d is not None]
            if not edits:
                continue
            source = ast.unparse(tree)
            if source != baseline:
                return Proposal(
                    source=source,
                    parent_ids=(parent.id,),
                    mutator=self.name,
                    status=MutationStatus.OK,
                    meta={"edits": edits, "attempts": attempt},
                )
        return Proposal(
            source=parent.source,
            parent_ids=(parent.id,),
            mutator=self.name,
            status=MutationStatus.NO_OP,
            meta={"edits": [], "attempts": _MAX_ATTEMPTS},
        )

    def _edit(self, tree: ast.Module, rng: np.random.Generator) -> str | None:
        """Apply one random edit in place; return its description, or None if none applies.

        Draws an edit kind by weight; a kind with no site in ``tree`` is
        dropped and the draw repeated, which is the same as renormalising the
        weights over the kinds that have sites (only the drawn kind's sites
        are searched, which keeps an edit cheap).
        """
        weights = self._weights.copy()
        while weights.sum() > 0:
            k = int(rng.choice(len(_EDIT_KINDS), p=weights / weights.sum()))
            kind = _EDIT_KINDS[k]
            sites = _SITE_FINDERS[kind](tree)
            if sites:
                break
            weights[k] = 0.0
        else:
            return None
        site = sites[int(rng.integers(len(sites)))]
        if kind == "constant":
            return self._perturb_constant(site, rng)
        if kind == "operator":
            return _swap_operator(site)
        if kind == "duplicate":
            return _duplicate_statement(site)
        if kind == "grow":
            return grow(site, rng, self.constant_sigma)
        return _delete_statement(site)

    def _perturb_constant(self, node: ast.Constant, rng: np.random.Generator) -> str:
        old = node.value
        if isinstance(old, int):
            scale = max(1.0, self.constant_sigma * min(abs(old), 2**53))
            step = max(1, int(round(abs(rng.normal(0.0, scale)))))
            if old > 0 and rng.random() < 0.5:
                new = max(1, old - step)
            else:
                new = old + step
            if new == old:  # old == 1 asked to shrink: go up instead
                new = old + step
        else:
            z = float(rng.normal())
            raw = abs(old * (1.0 + self.constant_sigma * z)) if old != 0 else abs(self.constant_sigma * z)
            new = float(f"{raw:.6g}")
            if not math.isfinite(new):  # e.g. 1e308 pushed over the edge
                new = old
        node.value = new
        return f"const {old!r}->{new!r} at line {getattr(node, 'lineno', '?')}"


# ---------------------------------------------------------------- edit sites


def _constant_sites(tree: ast.AST) -> list[ast.Constant]:
    """Numeric literals (int/float, not bool/complex), except values of ``axis=``/``axes=``."""
    sites: list[ast.Constant] = []
    structural: set[int] = set()  # ids of constants passed as axis=...
    for node in ast.walk(tree):  # breadth-first: a keyword comes before its value
        if isinstance(node, ast.keyword):
            if node.arg in _STRUCTURAL_KEYWORDS:
                structural.add(id(node.value))
        elif isinstance(node, ast.Constant):
            if type(node.value) in (int, float) and id(node) not in structural:
                sites.append(node)
    return sites


def _operator_sites(tree: ast.AST) -> list[Any]:
    """BinOp/AugAssign nodes with a swappable op, and ``(Compare, index)`` per swappable comparison."""
    sites: list[Any] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if type(node.op) in _BINOP_SWAPS and not _has_str_operand(node):
                sites.append(node)
        elif isinstance(node, ast.AugAssign):
            if type(node.op) in _BINOP_SWAPS and not _is_str_constant(node.value):
                sites.append(node)
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _CMPOP_SWAPS:
                    sites.append((node, i))
    return sites


def _duplicate_sites(tree: ast.AST) -> list[tuple[list[ast.stmt], int]]:
    """``(block, index)`` of statements in function bodies (any depth) that may be duplicated."""
    return [
        (block, i)
        for fn in _functions(tree)
        for block in _blocks_in_function(fn)
        for i, stmt in enumerate(block)
        if not isinstance(stmt, _NO_DUPLICATE) and not _is_docstring(block, i)
    ]


def _delete_sites(tree: ast.AST) -> list[tuple[list[ast.stmt], int]]:
    """``(block, index)`` of statements in function bodies (any depth) that may be deleted."""
    sites: list[tuple[list[ast.stmt], int]] = []
    for fn in _functions(tree):
        first, loads = _name_uses(fn)
        for block in _blocks_in_function(fn):
            for i, stmt in enumerate(block):
                if (
                    not isinstance(stmt, _NO_DELETE)
                    and not _is_docstring(block, i)
                    and not _binds_needed_name(stmt, first, loads)
                ):
                    sites.append((block, i))
    return sites


_SITE_FINDERS = {
    "constant": _constant_sites,
    "operator": _operator_sites,
    "duplicate": _duplicate_sites,
    "delete": _delete_sites,
    "grow": grow_sites,
}


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _blocks_in_function(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[list[ast.stmt]]:
    """Statement lists of ``fn``'s body and of nested compound statements (not nested defs)."""
    blocks: list[list[ast.stmt]] = []
    stack: list[list[ast.stmt]] = [fn.body]
    while stack:
        block = stack.pop()
        blocks.append(block)
        for stmt in block:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue  # nested defs are visited on their own by ast.walk
            for field in _BLOCK_FIELDS:
                inner = getattr(stmt, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    stack.append(inner)
            for handler in getattr(stmt, "handlers", []):  # try/except
                stack.append(handler.body)
            for case in getattr(stmt, "cases", []):  # match
                stack.append(case.body)
    return blocks


def _name_uses(fn: ast.AST) -> tuple[dict[str, ast.Name], Counter]:
    """First binding of each name in source order, and how often each name is read, under ``fn``.

    A binding is a ``Name`` in store or del context (assignment targets, loop
    and ``with`` targets...); parameters are not statements and never count.
    """
    first: dict[str, ast.Name] = {}
    loads: Counter = Counter()
    stack: list[ast.AST] = [fn]
    while stack:  # pre-order depth-first walk, children left to right = source order
        node = stack.pop()
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads[node.id] += 1
            else:
                first.setdefault(node.id, node)
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return first, loads


def _binds_needed_name(stmt: ast.stmt, first: dict[str, ast.Name], loads: Counter) -> bool:
    """True if ``stmt`` holds the first binding of a name that is read outside ``stmt``.

    ``first``/``loads`` come from :func:`_name_uses` over the enclosing
    function. Deleting such a statement would almost surely raise NameError.
    """
    own_loads: Counter = Counter()
    own_first: list[str] = []
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                own_loads[node.id] += 1
            elif first.get(node.id) is node:
                own_first.append(node.id)
    return any(loads[name] > own_loads[name] for name in own_first)


def _is_docstring(block: list[ast.stmt], index: int) -> bool:
    stmt = block[index]
    return (
        index == 0
        and isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_str_constant(node: ast.AST) -> bool:
    return isinstance(node, (ast.Constant, ast.JoinedStr)) and not isinstance(
        getattr(node, "value", None), (int, float)
    )


def _has_str_operand(node: ast.BinOp) -> bool:
    return _is_str_constant(node.left) or _is_str_constant(node.right)


# ---------------------------------------------------------------- edits


def _swap_operator(site: Any) -> str:
    if isinstance(site, tuple):
        node, i = site
        old = type(node.ops[i])
        new = _CMPOP_SWAPS[old]
        node.ops[i] = new()
    else:
        node = site
        old = type(node.op)
        new = _BINOP_SWAPS[old]
        node.op = new()
    suffix = "=" if isinstance(node, ast.AugAssign) else ""
    return (
        f"op {_OP_SYMBOLS[old]}{suffix} -> {_OP_SYMBOLS[new]}{suffix} "
        f"at line {getattr(node, 'lineno', '?')}"
    )


def _duplicate_statement(site: tuple[list[ast.stmt], int]) -> str:
    block, i = site
    block.insert(i + 1, copy.deepcopy(block[i]))
    return f"dup line {getattr(block[i], 'lineno', '?')}"


def _delete_statement(site: tuple[list[ast.stmt], int]) -> str:
    block, i = site
    removed = block.pop(i)
    if not block or all(_is_docstring(block, k) for k in range(len(block))):
        block.append(ast.Pass())
    return f"del line {getattr(removed, 'lineno', '?')}"
