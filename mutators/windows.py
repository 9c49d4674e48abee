"""Fitting a prompt into a model's context: windows of whole lines around the part being edited.

A window is ``(start, end)``: lines ``start:end`` (0-based, end excluded) of a program split
with ``splitlines(keepends=True)``; the *focus* is the part every window must keep.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

__all__ = ["function_lines", "grow_window", "renumber_anchor", "shrink_window"]


def renumber_anchor(anchor_lines: tuple[int, int], start: int) -> str:
    """The hunk header for 0-based lines ``anchor_lines`` (start, end) of a window starting at line ``start``."""
    first, count = anchor_lines[0] - start + 1, anchor_lines[1] - anchor_lines[0]
    return f"@@ -{first},{count} +{first},{count} @@"


def function_lines(source: str, name: str) -> tuple[int, int] | None:
    """0-based ``(first, end)`` lines of the top-level function ``name`` with its decorators; None if absent."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return first - 1, node.end_lineno
    return None


def grow_window(lines: list[str], focus: tuple[int, int], budget: int,
                tokens: Callable[[str], int]) -> tuple[int, int] | None:
    """Lines ``start:end`` around ``focus`` whose summed per-line token counts stay within ``budget``,
    grown one line at a time alternately above and below; None if ``focus`` alone exceeds it."""
    start, end = focus
    used = sum(tokens(x) for x in lines[start:end])
    if used > budget:
        return None
    up, down = start > 0, end < len(lines)
    while up or down:
        for side in ("up", "down"):
            if side == "up" and up:
                cost = tokens(lines[start - 1])
                if used + cost > budget:
                    up = False
                else:
                    start, used = start - 1, used + cost
                    up = start > 0
            elif side == "down" and down:
                cost = tokens(lines[end])
                if used + cost > budget:
                    down = False
                else:
                    end, used = end + 1, used + cost
                    down = end < len(lines)
    return start, end


def shrink_window(window: tuple[int, int], focus: tuple[int, int]) -> tuple[int, int] | None:
    """``window`` one line smaller on its larger side beyond ``focus``; None when only ``focus`` is left."""
    start, end = window
    above, below = focus[0] - start, end - focus[1]
    if above <= 0 and below <= 0:
        return None
    return (start + 1, end) if above >= below else (start, end - 1)
