"""Duplicate detection: a program whose canonical form was already evaluated in the run is not evaluated again.

The canonical form (:func:`canonical_form`) is the program's AST with what cannot change its
behaviour taken out: comments and formatting (gone in any AST), docstrings, and the names of
function-local variables and arguments, which are renamed in order of first appearance. Two
programs with the same canonical form compute the same thing (short of introspecting their own
local names), so the second is recorded as status ``duplicate`` with a pointer to the first.
:func:`program_key` hashes it; mutator workers compute keys next to the children they write,
so programs never travel to the driver for this.

The canonical text is ``ast.dump``'s, which differs between Python minor versions (3.12 added
fields, 3.13 omits empty ones), so a key is only comparable with keys from the same version:
:data:`KEY_VERSION` names it, a run's store records it, and a run resumed under another version
recomputes its stored keys from the stored programs.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from collections.abc import Iterable

from elm.types import EvalStatus

__all__ = ["KEY_VERSION", "DuplicateIndex", "canonical_form", "program_key"]

#: what keys computed here are comparable with: the Python version whose ``ast`` made them
KEY_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"

#: outcomes that say nothing about the program (its worker or the machine failed): evaluate it again
RETRY_STATUSES = frozenset({EvalStatus.TIMEOUT.value, EvalStatus.SANDBOX_LOST.value, EvalStatus.LOST.value})


class _Canonical(ast.NodeTransformer):
    """Drops docstrings and renames each function's local names to ``_v0, _v1, ...``."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, str]] = []

    def _strip_docstring(self, body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:] or [ast.Pass()]
        return body

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._strip_docstring(node.body)
        self.generic_visit(node)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.name = self._rename(node.name)
        node.body = self._strip_docstring(node.body)
        self.generic_visit(node)
        return node

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> ast.AST:
        if not isinstance(node, ast.Lambda):
            node.name = self._rename(node.name)  # a nested function's name is its parent's local
        local: set[str] = set()
        args = node.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                local.add(a.arg)
        body = node.body if isinstance(node.body, list) else [node.body]
        declared: set[str] = set()
        seen: list[tuple[int, int, str]] = []  # (line, column, name) of every name in the scope
        for stmt in body:  # one walk of the scope collects both the locals and where names first appear
            for sub in _walk_scope(stmt):
                if isinstance(sub, ast.Name):
                    seen.append((sub.lineno, sub.col_offset, sub.id))
                    if isinstance(sub.ctx, (ast.Store, ast.Del)):
                        local.add(sub.id)
                elif isinstance(sub, (ast.Global, ast.Nonlocal)):
                    declared.update(sub.names)
                elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    local.add(sub.name)
                    seen.append((sub.lineno, sub.col_offset, sub.name))
                elif isinstance(sub, ast.ExceptHandler) and sub.name:
                    local.add(sub.name)
                    seen.append((sub.lineno, sub.col_offset, sub.name))
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    bound = [a.asname or a.name.split(".")[0] for a in sub.names if a.name != "*"]
                    local.update(bound)
                    seen.extend((sub.lineno, sub.col_offset, b) for b in bound)
        local -= declared
        order = _first_appearance(node, local, seen)
        self.scopes.append({name: f"_v{i}" for i, name in enumerate(order)})
        if not isinstance(node, ast.Lambda):
            node.body = self._strip_docstring(node.body)
        self.generic_visit(node)
        self.scopes.pop()
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function  # type: ignore[assignment]

    def _rename(self, name: str) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return name

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._rename(node.id)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = self._rename(node.name)
        self.generic_visit(node)
        return node

    def visit_alias(self, node: ast.alias) -> ast.AST:
        if self.scopes and node.name != "*":
            bound = node.asname or node.name.split(".")[0]
            renamed = self._rename(bound)
            if renamed != bound:
                if node.asname is None and "." in node.name:
                    return node  # `import a.b` binds `a` to the package: keep it as written
                node.asname = renamed
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._rename(node.arg)
        node.annotation = None
        return node


def _walk_scope(node: ast.AST) -> Iterable[ast.AST]:
    """Nodes of one function scope: nested functions, lambdas and classes are yielded but not entered."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current is not node and isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                                        ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(current))


def _first_appearance(func: ast.AST, names: set[str], seen: list[tuple[int, int, str]]) -> list[str]:
    """``names`` in the order they first appear in ``func``: arguments first, then the body in source
    order (``seen``: (line, column, name) of the names in the body, in any order)."""
    order: dict[str, None] = {}
    args = func.args  # type: ignore[attr-defined]
    for a in [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]:
        if a is not None and a.arg in names:
            order.setdefault(a.arg, None)
    # a stable sort by position: names at one position (import a, b) keep the order of the walk
    for _, _, name in sorted((entry for entry in seen if entry[2] in names), key=lambda e: (e[0], e[1])):
        order.setdefault(name, None)
    return list(order)


def canonical_form(source: str) -> str:
    """The canonical text of ``source`` (see the module docstring); raises SyntaxError if it does not parse."""
    tree = _Canonical().visit(ast.parse(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None  # annotations do not change behaviour
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            node.annotation = ast.Constant(value=None)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def program_key(source: str | None) -> str | None:
    """A short hash of the canonical form of ``source``; None when it has none (no source, does not parse)."""
    if not isinstance(source, str):
        return None
    try:
        form = canonical_form(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    return hashlib.blake2b(form.encode(), digest_size=12).hexdigest()


class DuplicateIndex:
    """Program key -> id of the run's evaluation that first evaluated it (the driver's side).

    ``claim`` is called when a child's key becomes known (before it is evaluated): it returns the
    id of an earlier evaluation of the same program, or registers this id as the first. ``settle``
    is called with each finished evaluation's status: a program whose outcome said nothing about it
    (a timeout under load, a lost sandbox) is released, so the next copy is evaluated again.
    """

    def __init__(self) -> None:
        self._first: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._first)

    def claim(self, key: str | None, evaluation_id: int) -> int | None:
        if key is None:
            return None
        first = self._first.setdefault(key, evaluation_id)
        return None if first == evaluation_id else first

    def settle(self, key: str | None, evaluation_id: int, status: str) -> None:
        if key is not None and status in RETRY_STATUSES and self._first.get(key) == evaluation_id:
            del self._first[key]
