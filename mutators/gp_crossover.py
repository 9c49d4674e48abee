"""Homologous GP crossover: a child is its first parent with one part taken from its second.

The syntactic counterpart of showing several programs in one prompt: where
:class:`~mutators.gp.GPMutator` can only re-tune, swap, copy and delete what one
lineage already has, this operator moves what another lineage found into it.
Parts are matched by what they *are*, not by position, so a swap keeps the
program's shape (and usually its validity):

``function``
    Replace a top-level function of the first parent by the second parent's
    function of the same name (e.g. a ``pack`` layout from one elite with the
    ``valid_radii`` of another).
``statement``
    Replace one assignment inside a function of the first parent by an
    assignment of the second parent's function of the same name that assigns
    the same target (compared as printed, e.g. ``x0, y0`` or ``r[i]``), e.g.
    one lineage's tuned constants into another's construction.

Only parts whose printed forms differ count. A child is printed with
:func:`ast.unparse`, so it always parses. When the parents share nothing that
differs (identical programs, or programs without common function names) the
child is the first parent with status ``no_op``.

Randomness comes only from ``np.random.default_rng(seed)`` of each
:meth:`GPCrossoverMutator.mutate` call, so a batch is reproducible from its seed.
"""

from __future__ import annotations

import ast
import builtins
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from elm.config import GPCrossoverMutatorConfig
from elm.mutator import Mutator
from elm.types import MutationStatus, Parent, Proposal, TaskContext
from mutators.gp import _blocks_in_function

_DEFAULTS = GPCrossoverMutatorConfig()  # the one place of the defaults

__all__ = ["GPCrossoverMutator"]

_KINDS = ("function", "statement")

#: draws of a part before a pair whose every swap gives back the second parent is a no-op
_MAX_ATTEMPTS = 4

#: expressions whose variables live in a scope of their own
_OWN_SCOPES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)

#: a function site: (index in the first parent's module body, the second parent's def)
_FunctionSite = tuple[int, ast.stmt]
#: a statement site: (block of the first parent, index in it, the second parent's statement)
_StatementSite = tuple[list[ast.stmt], int, ast.stmt]


class GPCrossoverMutator(Mutator):
    """Two parents per child; the child is the first with one function or assignment of the second.

    Args:
        p_function: weight of swapping a whole top-level function.
        p_statement: weight of swapping one assignment (same function, same
            target). Weights must be finite, >= 0 and not both 0; a kind with
            no site in the pair is dropped and the other one used.
        name: mutator name recorded with each proposal (default ``"gp_crossover"``).

    ``mutate`` ignores ``task``: the edits are syntactic. One child costs about
    as much as a :class:`~mutators.gp.GPMutator` child (two parses, one unparse).
    """

    name: ClassVar[str] = "gp_crossover"
    parents_per_child: ClassVar[int] = 2
    checks_syntax: ClassVar[bool] = True  # children are unparsed from an AST, so they always parse

    def __init__(self, *, p_function: float = _DEFAULTS.p_function, p_statement: float = _DEFAULTS.p_statement,
                 name: str | None = None) -> None:
        weights = {"p_function": p_function, "p_statement": p_statement}
        for key, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {w!r}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"at least one of p_function and p_statement must be > 0, got {weights}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        self._weights = np.array([float(p_function), float(p_statement)])
        if name is not None:
            self.name = name  # instance override of the class default

    def __repr__(self) -> str:
        return (f"GPCrossoverMutator(p_function={self._weights[0]:g}, p_statement={self._weights[1]:g}, "
                f"name={self.name!r})")

    def mutate(self, *, parents: Sequence[Sequence[Parent]], task: TaskContext, seed: int) -> list[Proposal]:
        """One child per parent group, from the group's first two parents.

        Returns ``len(parents)`` proposals in order: status ``"ok"`` with
        ``meta["edits"]`` (e.g. ``["function valid_radii from 17"]``);
        ``"malformed"`` with ``source=None`` when the first parent does not
        parse; ``"no_op"`` with the first parent's source when the two share no
        differing function or assignment (a group of one parent is always a
        no-op).

        Raises:
            ValueError: a parent group is empty.
        """
        rng = np.random.default_rng(seed)
        out = []
        for index, group in enumerate(parents):
            if len(group) == 0:
                raise ValueError(f"parent group {index} is empty; each group needs at least one Parent")
            out.append(self.child(group[0], group[1] if len(group) > 1 else None, rng))
        return out

    def child(self, first: Parent, second: Parent | None, rng: np.random.Generator) -> Proposal:
        """The child of one pair, drawing from ``rng`` (what :meth:`mutate` does per group; also used
        by :class:`~mutators.gp.GPMutator` for its ``crossover`` edit). Statuses as in :meth:`mutate`."""
        ids = (first.id,) if second is None else (first.id, second.id)
        try:
            tree = ast.parse(first.source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return Proposal(source=None, parent_ids=ids, mutator=self.name, status=MutationStatus.MALFORMED,
                            meta={"error": f"first parent does not parse: {type(exc).__name__}: {exc}"})
        other = None
        if second is not None and second.source != first.source:
            try:
                other = ast.parse(second.source)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                pass  # nothing to take from it: the child is a no-op below
        sites: dict[str, list[Any]] = {"function": [], "statement": []}
        if other is not None:
            sites = {"function": _function_sites(tree, other), "statement": _statement_sites(tree, other)}
        weights = np.array([w if sites[k] else 0.0 for k, w in zip(_KINDS, self._weights)])
        if weights.sum() > 0:
            second_printed = ast.unparse(other)
            for _ in range(_MAX_ATTEMPTS):
                kind = _KINDS[int(rng.choice(len(_KINDS), p=weights / weights.sum()))]
                i = int(rng.integers(len(sites[kind])))
                child, edit = _apply(tree, kind, sites[kind][i], second.id)
                # taking the only part in which the parents differ gives the second parent again:
                # a program this run has already evaluated
                if child != second_printed:
                    return Proposal(source=child, parent_ids=ids, mutator=self.name, status=MutationStatus.OK,
                                    meta={"edits": [edit]})
        return Proposal(source=first.source, parent_ids=ids, mutator=self.name, status=MutationStatus.NO_OP,
                        meta={"edits": []})


def _apply(tree: ast.Module, kind: str, site: Any, donor_id: int) -> tuple[str, str]:
    """``tree`` printed with the site's donor part in place, and the edit's description.

    The donor node is lent, not copied (printing does not change it), and the
    swap is undone before returning, so ``tree`` (and every other site pointing
    into it) stays the first parent's.
    """
    if kind == "function":
        block, position, donor = tree.body, site[0], site[1]
        edit = f"function {donor.name} from {donor_id}"
    else:
        block, position, donor = site
        edit = f"line {getattr(block[position], 'lineno', '?')} from {donor_id} line {getattr(donor, 'lineno', '?')}"
    original = block[position]
    block[position] = donor
    try:
        return ast.unparse(tree), edit
    finally:
        block[position] = original


def _top_functions(tree: ast.Module) -> dict[str, tuple[int, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Top-level functions by name (the last definition wins, as at import), with their index."""
    return {node.name: (i, node) for i, node in enumerate(tree.body)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _function_sites(tree: ast.Module, other: ast.Module) -> list[_FunctionSite]:
    mine, theirs = _top_functions(tree), _top_functions(other)
    return [(mine[name][0], theirs[name][1]) for name in mine
            if name in theirs and ast.unparse(mine[name][1]) != ast.unparse(theirs[name][1])]


def _assignments(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[list[ast.stmt], int, str]]:
    """Every assignment under ``fn`` (not in nested defs) as (block, index, printed target)."""
    out = []
    for block in _blocks_in_function(fn):
        for i, stmt in enumerate(block):
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                out.append((block, i, ast.unparse(stmt.targets[0])))
            elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) and stmt.value is not None:
                out.append((block, i, ast.unparse(stmt.target)))
    return out


def _statement_sites(tree: ast.Module, other: ast.Module) -> list[_StatementSite]:
    """Pairs (an assignment of ``tree``, one of ``other``) in same-named functions with the same target.

    An assignment of the same kind only (``=`` for ``=``, ``+=`` for ``+=``), so
    a swap never turns a first binding into an update of an unbound name; and
    only a donor whose every name is defined in the receiving program (bound in
    the function, at module level, or a builtin), so a swap does not bring in a
    variable the receiver never sets (``stretch`` from one layout into another);
    nor one that reads its own target in place of one that does not.
    """
    theirs = _top_functions(other)
    module = _module_names(tree)
    sites: list[_StatementSite] = []
    for name, (_, fn) in _top_functions(tree).items():
        if name not in theirs:
            continue
        known = module | _function_names(fn)
        donors: dict[tuple[type, str], list[tuple[ast.stmt, str]]] = {}  # with each donor's printed form
        for block, i, target in _assignments(theirs[name][1]):
            if _loaded_names(block[i]) <= known:
                donors.setdefault((type(block[i]), target), []).append((block[i], ast.unparse(block[i])))
        for block, i, target in _assignments(fn):
            printed = ast.unparse(block[i])
            updates = _loaded_names(block[i]) & _target_names(block[i])
            for donor, donor_printed in donors.get((type(block[i]), target), ()):
                # `pts = [p for p in pts if ...]` reads what it assigns: it may only replace a
                # statement that does too, never the first binding `pts = [...]`
                if _loaded_names(donor) & _target_names(donor) and not updates:
                    continue
                if donor_printed != printed:
                    sites.append((block, i, donor))
    return sites


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (imports, defs, classes, assignment targets) and the builtins."""
    names = set(dir(builtins))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _function_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters of ``fn`` and every name stored anywhere in it."""
    params = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs, fn.args.vararg, fn.args.kwarg]
    names = {a.arg for a in params if a is not None}
    stack: list[ast.AST] = list(fn.body)
    while stack:  # comprehensions and lambdas have scopes of their own: their variables do not count
        node = stack.pop()
        if isinstance(node, _OWN_SCOPES):
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return names


def _loaded_names(stmt: ast.stmt) -> set[str]:
    """Names ``stmt`` reads, less the variables of its comprehensions and lambdas."""
    loads, local = set(), set()
    for n in ast.walk(stmt):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            loads.add(n.id)
        elif isinstance(n, ast.comprehension):
            local.update(x.id for x in ast.walk(n.target) if isinstance(x, ast.Name))
        elif isinstance(n, ast.arg):
            local.add(n.arg)
    return loads - local


def _target_names(stmt: ast.stmt) -> set[str]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
