"""The GP mutator's ``grow`` edit: a terminal of an arithmetic expression becomes a small expression.

Tree-based genetic programming's subtree mutation, restricted to what keeps a
child likely to run: a variable or numeric literal that is an operand of an
arithmetic operator (``+ - * / // % **``), a unary minus/plus or a comparison,
inside a function, is replaced by

* ``(t + c * w)`` or ``(t - c * w)``, or
* ``(t * (1 + c * w))`` or ``(t * (1 - c * w))``,

where ``t`` is the terminal, ``c`` a new float literal and ``w`` one of: nothing
(``t + c``; additive forms only), a variable ``v``, a product ``v * u`` of two
variables (``v * v`` included), or ``(v % 2)`` (a parity, which turns a
regular layout into an alternating one). ``v`` and ``u`` are names that are
in scope at the site and used as numbers somewhere in the function: the
function's parameters, names bound on earlier lines, and the targets of the
``for`` loops and comprehensions around the site. ``c`` is
``constant_sigma * 10**U(-2, 1)`` (3 significant digits), so a new term starts
small or moderate and later ``constant`` edits tune it.

Sites inside a subscript's index or slice, and inside the arguments of
``range(...)``, are skipped: they must stay ints, and a float term there only
raises ``TypeError``.

This is the one edit that adds new structure (and new tunable constants) to a
program; the others re-tune, swap, copy or delete what the seeds already have.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

__all__ = ["grow", "grow_sites"]

#: operators whose operands are numbers (the ``+`` of two strings is excluded where a literal shows it)
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class _Site:
    """Where a terminal sits: ``holder.field`` (or ``holder.field[index]``), and the names in scope."""

    __slots__ = ("holder", "field", "index", "node", "names")

    def __init__(self, holder: ast.AST, field: str, index: int | None, node: ast.AST, names: tuple[str, ...]):
        self.holder, self.field, self.index, self.node, self.names = holder, field, index, node, names

    def replace(self, new: ast.AST) -> None:
        if self.index is None:
            setattr(self.holder, self.field, new)
        else:
            getattr(self.holder, self.field)[self.index] = new


def _is_terminal(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return isinstance(node.ctx, ast.Load)
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _operand_slots(node: ast.AST) -> list[tuple[str, int | None, ast.AST]]:
    """``(field, index, child)`` of ``node``'s numeric operands (empty for anything else)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH):
        if _is_str(node.left) or _is_str(node.right):
            return []
        return [("left", None, node.left), ("right", None, node.right)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return [("operand", None, node.operand)]
    if isinstance(node, ast.Compare) and not any(isinstance(op, (ast.In, ast.NotIn, ast.Is, ast.IsNot))
                                                 for op in node.ops):
        operands = [("left", None, node.left)] + [("comparators", i, c) for i, c in enumerate(node.comparators)]
        if any(_is_str(c) for _, _, c in operands):
            return []
        return operands
    return []


def _targets(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    return [arg.arg for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def grow_sites(tree: ast.AST) -> list[_Site]:
    """Every terminal the grow edit may replace, with the numeric names in scope there.

    A function's numeric names are those that appear as an operand of an
    arithmetic operator, a unary minus/plus or a comparison anywhere in its
    own scope. Nested functions, classes and lambdas are not part of that
    scope: a nested function is visited on its own (its sites see its own
    scope only), and what a nested scope binds is not offered outside it.
    """
    sites: list[_Site] = []
    for fn in [n for n in ast.walk(tree) if isinstance(n, _FUNCTIONS)]:
        parents: dict[int, tuple[ast.AST, str]] = {}
        numeric: set[str] = set()
        bound_at: dict[str, int] = {}  # name -> first line it is bound on (not counting comprehension targets)
        comprehension_targets: set[int] = set()
        found: list[tuple[ast.AST, str, int | None, ast.AST]] = []
        own: set[int] = set()  # ids of the nodes of fn's own scope
        stack: list[ast.AST] = [fn]
        while stack:
            node = stack.pop()
            own.add(id(node))
            for field, value in ast.iter_fields(node):
                children = value if isinstance(value, list) else [value]
                for child in children:
                    if isinstance(child, ast.AST):
                        parents[id(child)] = (node, field)
                        if not isinstance(child, _FUNCTIONS + (ast.ClassDef, ast.Lambda)):
                            stack.append(child)
            if isinstance(node, ast.comprehension):
                comprehension_targets.update(id(n) for n in ast.walk(node.target))
            for field, index, child in _operand_slots(node):
                if isinstance(child, ast.Name):
                    numeric.add(child.id)
                if _is_terminal(child):
                    found.append((node, field, index, child))
        for node in ast.walk(fn):  # breadth first, as the names in scope are listed (the draws depend on it)
            if (id(node) in own and isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)
                    and id(node) not in comprehension_targets and hasattr(node, "lineno")):
                line = bound_at.get(node.id)
                bound_at[node.id] = node.lineno if line is None else min(line, node.lineno)
        params = [p for p in _parameters(fn) if p in numeric]
        for holder, field, index, child in found:
            names = _scope(child, holder, parents, fn, bound_at)
            if names is None:
                continue
            sites.append(_Site(holder, field, index, child, tuple(dict.fromkeys(
                [*params, *(n for n in names if n in numeric)]))))
    return sites


def _scope(child: ast.AST, holder: ast.AST, parents: dict[int, tuple[ast.AST, str]],
           fn: ast.AST, bound_at: dict[str, int]) -> list[str] | None:
    """Names in scope at ``child`` (besides parameters), or None where a float would break the program."""
    line = getattr(child, "lineno", None) or getattr(holder, "lineno", None)
    names = [name for name, first in bound_at.items() if line is not None and first < line]
    node, previous = holder, child
    while node is not fn:
        if isinstance(node, ast.Subscript) and previous is node.slice:
            return None  # an index or a slice bound must stay an int
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
                and previous is not node.func):
            return None
        if isinstance(node, _COMPREHENSIONS):
            for gen in node.generators:
                names.extend(_targets(gen.target))
        elif isinstance(node, (ast.For, ast.AsyncFor)) and previous is not node.iter:
            names.extend(_targets(node.target))
        if id(node) not in parents:
            break
        previous, node = node, parents[id(node)][0]
    return names


def grow(site: Any, rng: np.random.Generator, sigma: float) -> str:
    """Replace ``site``'s terminal by one of the expressions of the module docstring; describe the edit."""
    t = site.node
    before = ast.unparse(t)
    c = float(f"{sigma * 10 ** rng.uniform(-2.0, 1.0):.3g}")
    names = site.names
    shape = int(rng.integers(4)) if names else 0  # 0: c alone, 1: c * v, 2: c * v * u, 3: c * (v % 2)
    if shape == 0:
        term: ast.expr = ast.Constant(c)
    else:
        v = ast.Name(names[int(rng.integers(len(names)))], ast.Load())
        if shape == 1:
            w: ast.expr = v
        elif shape == 2:
            w = ast.BinOp(v, ast.Mult(), ast.Name(names[int(rng.integers(len(names)))], ast.Load()))
        else:
            w = ast.BinOp(v, ast.Mod(), ast.Constant(2))
        term = ast.BinOp(ast.Constant(c), ast.Mult(), w)
    sign = ast.Add() if rng.random() < 0.5 else ast.Sub()
    if shape and rng.random() < 0.5:  # relative: t * (1 +/- c w)
        new: ast.expr = ast.BinOp(t, ast.Mult(), ast.BinOp(ast.Constant(1.0), sign, term))
    else:
        new = ast.BinOp(t, sign, term)
    site.replace(new)
    return f"grow {before} -> {ast.unparse(new)} at line {getattr(t, 'lineno', '?')}"
