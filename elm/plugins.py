"""Finding plugins: every environment, mutator, sandbox backend and parent selector is named by a
``_target_`` path (``"package.module.ClassName"``) and built from plain keyword arguments.

This is the one registration mechanism: the engine never imports a plugin package by name, it
imports whatever class a config's ``_target_`` names, checks it is a subclass of the interface
it must implement, and checks the arguments against the constructor before anything starts.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, TypeVar

__all__ = ["PluginSpec", "check_arguments", "import_target", "resolve_class"]

T = TypeVar("T")


def import_target(path: str) -> Any:
    """Import ``"package.module.Name"`` and return ``Name``; errors name the path and the likely fix."""
    if not isinstance(path, str):
        raise ValueError(f"a _target_ must be a dotted path string 'module.Name', got {path!r}")
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"_target_ {path!r} is not a dotted path 'module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} (from _target_ {path!r}): {exc}. Is the module on "
            "PYTHONPATH (run from its directory, or pip install it)?"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from _target_ {path!r})") from None


def resolve_class(path: str, base: type[T], *, what: str) -> type[T]:
    """The class named by ``path``, which must be a subclass of ``base`` (``what`` names the role)."""
    cls = import_target(path)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{what} _target_ {path!r} is {cls!r}, not a subclass of {base.__module__}.{base.__name__}")
    if inspect.isabstract(cls):
        raise ValueError(f"{what} _target_ {path!r} is abstract (it does not implement every abstract method)")
    return cls


def check_arguments(cls: type, kwargs: Mapping[str, Any], *, what: str) -> None:
    """Raise ValueError if ``cls(**kwargs)`` would fail for an unknown or a missing keyword.

    Classes taking ``**kwargs`` accept any key; a close match is suggested for typos.
    """
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # builtins and some extension types have no signature
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = None
    else:
        known = [n for n, p in params.items()
                 if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for key in kwargs:
            if key not in known:
                close = get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{what}: {cls.__name__} takes no argument {key!r}{hint} "
                                 f"(it takes: {', '.join(known) or 'none'})")
    missing = [n for n, p in params.items()
               if p.default is inspect.Parameter.empty and n not in kwargs
               and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if missing:
        raise ValueError(f"{what}: {cls.__name__} needs argument(s) {missing}")


@dataclass(frozen=True)
class PluginSpec:
    """How to build a plugin anywhere (driver, Ray actor, sandbox): import path plus keyword arguments.

    ``target`` is ``"package.module.ClassName"``; ``kwargs`` is plain JSON-serialisable data
    (it crosses process and sandbox boundaries as JSON).
    """

    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, node: Mapping[str, Any], *, what: str = "plugin") -> PluginSpec:
        """From a resolved config node such as ``{"_target_": "...", "n": 26}`` (keys starting with ``_`` dropped)."""
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise ValueError(f"{what} config needs a '_target_' key naming its class, e.g. "
                             "_target_: environments.circle_packing.CirclePacking; got "
                             f"{dict(node) if isinstance(node, Mapping) else node!r}")
        kwargs = {str(k): v for k, v in node.items() if not str(k).startswith("_")}
        return cls(target=str(node["_target_"]), kwargs=kwargs)

    def to_config(self) -> dict[str, Any]:
        return {"_target_": self.target, **dict(self.kwargs)}

    def build(self, base: type[T], *, what: str = "plugin") -> T:
        """Import ``target`` (a subclass of ``base``) and instantiate it with ``kwargs``."""
        cls = resolve_class(self.target, base, what=what)
        check_arguments(cls, self.kwargs, what=what)
        return cls(**dict(self.kwargs))
