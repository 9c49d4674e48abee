"""The OpenAI-compatible HTTP backend against a real HTTP server on 127.0.0.1 started by the test.

The server answers ``/v1/completions`` and ``/v1/chat/completions`` from a
deterministic function of the request and injects faults on demand (HTTP
503/429/400, a reply slower than the client's timeout), so concurrency,
retries, timeouts, usage accounting and the operators' parsing run over a
real socket. Every request loop is bounded and the server stops with the module.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from elm.types import Parent, TaskContext
from mutators import DiffMutator, RewriteMutator
from mutators.backends import ChatPrompt, Sampling
from mutators.backends.openai import OpenAIBackend

TASK = TaskContext(name="toy", description="Return a number.", entry_point="f", signature="def f():")
PARENT = "def f():\n    x = 1\n    return x\n"


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.attempts: Counter[str] = Counter()
        self.headers: list[dict] = []
        self.bodies: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self._done()  # before the reply: the client may send its next request as soon as it has it
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout tests make it): nothing to deliver

    def do_POST(self):
        st = self.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = body.get("prompt") or json.dumps(body.get("messages"))
        with st.lock:
            st.in_flight += 1
            self._counted = True
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            st.attempts[key] += 1
            attempt = st.attempts[key]
            st.headers.append(dict(self.headers))
            st.bodies.append(body)
        try:
            time.sleep(0.25)  # a model's latency: lets concurrent requests overlap
            if "FAIL503" in key and attempt <= 2:
                return self._send(503, {"error": "overloaded"})
            if "RATE429" in key and attempt == 1:
                return self._send(429, {"error": "slow down"}, {"Retry-After": "0.1"})
            if "BAD400" in key:
                return self._send(400, {"error": {"message": "bad request: unknown field"}})
            if "SLOW" in key and attempt == 1:
                time.sleep(2.0)  # longer than the client's timeout in the test
            if self.path == "/v1/chat/completions":
                text = "Here it is:\n```python\ndef f():\n    x = 2\n    return x * 3\n```\nDone."
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            elif self.path == "/v1/completions":
                prompt = body["prompt"]
                if prompt.startswith("<NME>"):  # a diff model's record
                    text = " @@ -2,1 +2,1 @@\n-    x = 1\n+    x = 4\n<NME> next.py\n<BEF> ..."
                else:
                    text = f"echo {prompt[-12:]!r} seed={body.get('seed')} STOP tail"
                for stop in body.get("stop") or []:  # servers apply stops and leave them out
                    if stop in text:
                        text = text[: text.index(stop)]
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
            else:
                return self._send(404, {"error": "no such route"})
            usage = {"prompt_tokens": len(key.split()), "completion_tokens": len(text.split())}
            return self._send(200, {"id": "x", "object": "text_completion", "choices": [choice], "usage": usage})
        finally:
            self._done()

    def _done(self) -> None:
        if getattr(self, "_counted", False):
            with self.state.lock:
                self.state.in_flight -= 1
            self._counted = False


@pytest.fixture()
def server():
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def backend(url, **kw):
    return OpenAIBackend(base_url=url, model="tiny", **{"backoff_s": 0.05, "timeout_s": 5.0, **kw})


def test_batch_runs_concurrently_in_order_with_seeds_and_usage(server):
    url, state = server
    b = backend(url, concurrency=4)
    prompts = [f"prompt number {i}" for i in range(8)]
    start = time.perf_counter()
    out = b.generate(prompts, sampling=Sampling(max_new_tokens=20, stop=("STOP",)), seed=100)
    elapsed = time.perf_counter() - start
    assert state.max_in_flight == 4  # never more than `concurrency`, and it got there
    assert elapsed < 8 * 0.25 * 0.75  # two waves of 4, not 8 sequential requests
    for i, c in enumerate(out):
        assert c.finish == "stop" and c.text == f"echo {prompts[i][-12:]!r} seed={100 + i} "
        assert c.tokens_in == 3 and c.tokens_out == len(c.text.split()) and c.latency_s >= 0.25 and c.seconds > 0
    body = state.bodies[0]
    assert body["model"] == "tiny" and body["max_tokens"] == 20 and body["stop"] == ["STOP"]
    b.close()


def test_retries_503_and_429_then_succeeds(server):
    url, state = server
    b = backend(url, retries=3)
    [c, d] = b.generate(["FAIL503 please", "RATE429 please"], sampling=Sampling(), seed=0)
    assert c.finish == "stop" and state.attempts["FAIL503 please"] == 3
    assert d.finish == "stop" and state.attempts["RATE429 please"] == 2
    b.close()


def test_retries_exhausted_is_a_recorded_error_not_an_exception(server):
    url, state = server
    b = backend(url, retries=1)
    [c] = b.generate(["FAIL503 again"], sampling=Sampling(), seed=0)
    assert c.finish == "error" and "HTTP 503" in c.error and "2 attempt" in c.error and c.text == ""
    b.close()


def test_client_errors_are_not_retried(server):
    url, state = server
    [c] = backend(url, retries=3).generate(["BAD400"], sampling=Sampling(), seed=0)
    assert c.finish == "error" and "HTTP 400" in c.error and state.attempts["BAD400"] == 1


def test_timeout_then_retry(server):
    url, state = server
    b = backend(url, timeout_s=0.8, retries=2)
    [c] = b.generate(["SLOW reply"], sampling=Sampling(), seed=0)
    assert c.finish == "stop" and state.attempts["SLOW reply"] == 2 and c.latency_s >= 0.8
    [e] = backend(url, timeout_s=0.8, retries=0).generate(["SLOW again"], sampling=Sampling(), seed=0)
    assert e.finish == "error" and "timed out" in e.error.lower()


def test_api_key_comes_from_the_named_environment_variable(server, monkeypatch):
    url, state = server
    monkeypatch.setenv("ELM_TEST_KEY", "sk-test-123")
    backend(url, api_key_env="ELM_TEST_KEY").generate(["hello"], sampling=Sampling(), seed=0)
    backend(url, api_key_env="ELM_UNSET_KEY").generate(["hello again"], sampling=Sampling(), seed=0)
    assert state.headers[0].get("Authorization") == "Bearer sk-test-123"
    assert "Authorization" not in state.headers[1]


def test_rewrite_operator_over_chat_endpoint(server):
    url, state = server
    m = RewriteMutator(backend={"kind": "openai", "base_url": url, "model": "tiny", "backoff_s": 0.05},
                       style="chat", sampling={"max_new_tokens": 64})
    [p] = m.mutate(parents=[[Parent(id=3, source=PARENT, fitness=0.0, descriptor=(0.0,))]], task=TASK, seed=1)
    assert p.status == "ok" and p.source == "def f():\n    x = 2\n    return x * 3\n"
    assert p.tokens_out > 0 and p.meta["backend"].startswith("openai:")
    assert isinstance(ChatPrompt(messages=tuple((m["role"], m["content"]) for m in state.bodies[0]["messages"])),
                      ChatPrompt)
    assert "```" not in state.bodies[0].get("stop", [])  # no prefill on chat endpoints: the fence is not a stop
    m.close()


def test_diff_operator_over_completions_endpoint(server):
    url, state = server
    m = DiffMutator(backend={"kind": "openai", "base_url": url, "model": "tiny"}, messages=["Fixed bugs"])
    [p] = m.mutate(parents=[[Parent(id=3, source=PARENT, fitness=0.0, descriptor=(0.0,))]], task=TASK, seed=1)
    assert state.bodies[0]["prompt"] == (
        "<NME> program.py\n<BEF> def f():\n    x = 1\n    return x\n<MSG> Fixed bugs\n<DFF>")
    assert p.status == "ok" and p.meta["diff_status"] == "applied"
    assert p.source == "def f():\n    x = 4\n    return x\n"
    m.close()


@pytest.mark.parametrize("kwargs,match", [
    ({"base_url": "127.0.0.1:8000"}, "base_url"),
    ({"concurrency": 0}, "concurrency"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"retries": -1}, "retries"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenAIBackend(**{"base_url": "http://127.0.0.1:1/v1", "model": "m", **kwargs})
