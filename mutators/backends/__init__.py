"""Model backends for the language-model mutators: ``hf`` (transformers), ``vllm``, ``openai`` (HTTP).

:func:`build_backend` turns a config mapping into a backend. Backends are
shared within a process: operators (or mixture components) whose backend
configs are equal get the same loaded model, so a mixture of a rewrite and a
crossover operator on one model loads it once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from mutators.backends.base import Backend, ChatPrompt, Completion, Prompt, Sampling, cut_at_stop

__all__ = ["Backend", "ChatPrompt", "Completion", "Prompt", "Sampling", "build_backend", "release_backend",
           "KINDS", "cut_at_stop"]

KINDS = ("hf", "vllm", "openai")

_lock = threading.Lock()
_shared: dict[str, tuple[Backend, int]] = {}  # config key -> (backend, users)


def _key(cfg: Mapping[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def build_backend(cfg: Mapping[str, Any]) -> Backend:
    """Build (or reuse) the backend described by ``cfg``: ``{"kind": "hf"|"vllm"|"openai", **arguments}``.

    Keys whose value is None are dropped (the backend's default applies), so a
    typed Hydra schema may list every backend's options. Raises ValueError for
    an unknown kind or arguments the backend does not take.
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"backend must be a mapping like {{kind: hf, model: ...}}, got {cfg!r}")
    kind = cfg.get("kind", "hf")
    if kind not in KINDS:
        raise ValueError(f"backend.kind must be one of {KINDS}, got {kind!r}")
    args = {k: v for k, v in cfg.items() if k != "kind" and v is not None}
    key = _key({"kind": kind, **args})
    with _lock:
        if key in _shared:
            backend, users = _shared[key]
            _shared[key] = (backend, users + 1)
            return backend
        if kind == "hf":
            from mutators.backends.hf import HFBackend as cls
        elif kind == "vllm":
            from mutators.backends.vllm import VLLMBackend as cls
        else:
            from mutators.backends.openai import OpenAIBackend as cls
        try:
            backend = cls(**args)
        except TypeError as exc:  # an argument this kind does not take
            raise ValueError(f"backend (kind {kind}): {exc}") from exc
        backend._elm_key = key  # type: ignore[attr-defined]
        _shared[key] = (backend, 1)
        return backend


def release_backend(backend: Backend) -> None:
    """Drop one user of a shared backend; the last one closes it."""
    key = getattr(backend, "_elm_key", None)
    with _lock:
        if key is None or key not in _shared:
            backend.close()
            return
        shared, users = _shared[key]
        if users <= 1:
            del _shared[key]
            shared.close()
        else:
            _shared[key] = (shared, users - 1)
