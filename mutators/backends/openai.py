"""OpenAI-compatible HTTP backend: vLLM serve, llama.cpp server, Ollama, hosted APIs.

Raw-text prompts go to ``POST {base_url}/completions`` (FIM and diff formats
need the prompt verbatim); chat prompts to ``POST {base_url}/chat/completions``.
A batch is sent as ``concurrency`` parallel requests (one per child, each with
``seed + index``). A request that fails with a connection error, a timeout,
HTTP 408/409/429 or 5xx is retried up to ``retries`` times with exponential
backoff (honouring ``Retry-After`` up to ``max_backoff_s``); other HTTP
errors are not retried. A child whose request finally fails is a completion
with ``finish="error"``: it is recorded with its reason, the batch goes on.

Only the standard library is used (``urllib`` + a thread pool).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mutators.backends.base import Backend, ChatPrompt, Completion, Prompt, Sampling, cut_at_stop

__all__ = ["OpenAIBackend"]

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class OpenAIBackend(Backend):
    """Talks to an OpenAI-compatible server.

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000/v1"`` (vLLM serve) or ``"http://127.0.0.1:11434/v1"`` (Ollama).
        model: the ``model`` field of each request (the served model's name).
        api_key_env: name of the environment variable holding the API key
            (the key itself never goes into a config or the run store); unset
            or empty variable: no ``Authorization`` header.
        concurrency: requests in flight at once (>= 1).
        timeout_s: per-request timeout in seconds (connect + read).
        retries: extra attempts after a retryable failure (>= 0).
        backoff_s: first retry delay; doubles each attempt, capped at ``max_backoff_s``.
        max_stop: stop strings sent to the server (OpenAI accepts 4; the rest
            are applied locally after the response).
    """

    #: chat endpoints cannot continue a prefilled assistant reply
    supports_prefill = False

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        max_stop: int = 4,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"backend.base_url must be an http(s) URL like http://127.0.0.1:8000/v1, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"backend.model must name the served model, got {model!r}")
        for key, value, lo in (("concurrency", concurrency, 1), ("retries", retries, 0), ("max_stop", max_stop, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"backend.{key} must be an int >= {lo}, got {value!r}")
        for key, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or value < 0 or (key == "timeout_s" and value == 0):
                raise ValueError(f"backend.{key} must be a number > 0, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_stop = max_stop
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="elm-openai")
        self.label = f"openai:{self.base_url}:{model}"

    def generate(self, prompts: Sequence[Prompt], *, sampling: Sampling, seed: int) -> list[Completion]:
        if not prompts:
            return []
        start = time.perf_counter()
        futures = [self._pool.submit(self._one, p, sampling, seed + i) for i, p in enumerate(prompts)]
        results = [f.result() for f in futures]
        share = (time.perf_counter() - start) / len(prompts)
        from dataclasses import replace

        return [replace(c, seconds=share) for c in results]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ internals

    def _payload(self, prompt: Prompt, sampling: Sampling, seed: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "seed": seed,
        }
        if sampling.temperature > 0:
            body["top_p"] = sampling.top_p
        if sampling.stop and self.max_stop:
            body["stop"] = list(sampling.stop[: self.max_stop])
        if isinstance(prompt, ChatPrompt):
            body["messages"] = prompt.as_dicts()
            return "/chat/completions", body
        body["prompt"] = prompt
        return "/completions", body

    def _one(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        path, body = self._payload(prompt, sampling, seed)
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        start = time.perf_counter()
        last = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                reply = self._post(self.base_url + path, data, headers)
                return self._completion(reply, sampling, time.perf_counter() - start, attempt)
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.retries:
                    break
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                if exc.retry_after is not None:
                    delay = min(self.max_backoff_s, max(delay, exc.retry_after))
                time.sleep(delay)
            except ValueError as exc:  # not retryable: 4xx, or a reply that is not a completion
                last = str(exc)
                break
        return Completion(text="", tokens_in=0, tokens_out=0, seconds=0.0, finish="error",
                          latency_s=time.perf_counter() - start,
                          error=f"{self.base_url}{path}: {last} (after {attempt + 1} attempt(s))")

    def _post(self, url: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code in _RETRY_STATUS:
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                try:
                    wait = float(retry_after) if retry_after is not None else None
                except ValueError:
                    wait = None
                raise _Retryable(f"HTTP {exc.code}: {detail}", wait) from None
            raise ValueError(f"HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{type(exc).__name__}: {reason}") from None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"reply is not JSON: {raw[:120]!r}") from exc

    def _completion(self, reply: dict[str, Any], sampling: Sampling, latency: float, attempt: int) -> Completion:
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"reply has no choices[0].text/message.content: {json.dumps(reply)[:200]}") from exc
        text = text or ""
        usage = reply.get("usage") or {}
        text, hit = cut_at_stop(text, sampling.stop)
        finish = "length" if choice.get("finish_reason") == "length" and not hit else "stop"
        return Completion(text=text, tokens_in=int(usage.get("prompt_tokens") or 0),
                          tokens_out=int(usage.get("completion_tokens") or 0), seconds=0.0, finish=finish,
                          latency_s=latency)
