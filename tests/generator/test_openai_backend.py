"""The openai back-end: against vLLM's real OpenAI-compatible server, against the fake endpoint
(``trustwatch.tools.fake_endpoint``: seeded latency and faults), and against a scripted local HTTP
server for what the fake endpoint does not do: a fixed sequence of replies (two 429s, then a
success), replies it never sends (401, 404, a body with no choices), and a record of each request's
headers and body."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typing_extensions import Self

from tests.harness.vllm_fixtures import VllmEndpoint
from tests.harness.vllm_server import free_port
from trustwatch.generator.backends.base import GenRequest, create
from trustwatch.generator.backends.openai_api import OpenAIBackend, parse_retry_after
from trustwatch.tools.fake_endpoint import EndpointConfig, FakeEndpoint

SECRET = "sk-test-0123456789abcdef"


def completion(text: str = "hello there") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


# A reply: (status, headers, body) — body a dict (sent as JSON), bytes (sent as they are) or None.
Reply = tuple[int, dict[str, str], Any]


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 answering POST /v1/chat/completions from a script
    (for what :class:`FakeEndpoint` does not do; see the module's docstring).

    ``script(n, request_json, headers)`` gives the reply to the n-th request (0-based). The server
    records every request.
    """

    def __init__(self, script: Callable[[int, dict[str, Any], dict[str, str]], Reply], delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.requests: list[tuple[float, dict[str, Any], dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append((time.monotonic(), body, headers))
                time.sleep(outer.delay_s)
                status, extra, payload = outer.script(n, body, headers)
                if isinstance(payload, bytes):
                    data = payload
                else:
                    data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                if "content-type" not in extra:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ok(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
    return 200, {}, completion(f"reply to {body['messages'][0]['content']}")


def error(status: int, message: str = "boom", headers: dict[str, str] | None = None) -> Reply:
    return status, headers or {}, {"error": {"message": message, "type": "x", "code": status}}


def reqs(n: int, max_tokens: int = 8) -> list[GenRequest]:
    return [GenRequest(f"r{i}", f"prompt {i}", temperature=0.0, max_tokens=max_tokens) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Against the real vLLM server
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_vllm_server_returns_texts(vllm_server: VllmEndpoint) -> None:
    backend = create("openai", vllm_server.model, base_url=vllm_server.base_url, concurrency=4)
    try:
        batch = [
            GenRequest(f"r{i}", f"Question {i}: is it true?", temperature=[0.0, 1.0][i % 2], max_tokens=12, seed=i)
            for i in range(10)
        ]
        out = backend.generate(batch)
        assert [r.request_id for r in out] == [r.request_id for r in batch]
        assert all(not r.error for r in out), [r.error for r in out]
        assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in out)
        assert all(r.finish_reason in ("stop", "length") for r in out)
        assert sum(len(r.text) for r in out) > 0
        assert 0 < backend.peak_in_flight <= 4
        # Seeded sampling through the server is reproducible too.
        assert [r.text for r in backend.generate(batch)] == [r.text for r in out]
    finally:
        backend.close()


@pytest.mark.slow
def test_real_vllm_server_prompt_too_long_is_an_immediate_error(
    vllm_server: VllmEndpoint, backend_factory: Any
) -> None:
    backend = backend_factory(model=vllm_server.model, base_url=vllm_server.base_url)
    out = backend.generate([GenRequest("long", "word " * 800, 0.0, 8), *reqs(2)])
    assert out[0].error.startswith(f"HTTP 400 from {vllm_server.base_url}"), out[0].error
    assert backend.retries == 0  # a 4xx other than 429/408 is final
    assert not out[1].error and not out[2].error


# ---------------------------------------------------------------------------------------------
# Against a scripted local server
# ---------------------------------------------------------------------------------------------


def test_concurrency_limit_is_respected(backend_factory: Any) -> None:
    with FakeEndpoint(EndpointConfig(seed=0, latency="constant", median_s=0.15)) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=3)
        out = backend.generate(reqs(12, max_tokens=400))
        log = sorted(ep.log, key=lambda e: e.arrival)
    # In request order, each result the reply to its own prompt (the reply lengths are seeded draws).
    tokens = {e.prompt_head: e.completion_tokens for e in log}
    assert [r.request_id for r in out] == [f"r{i}" for i in range(12)]
    assert [r.completion_tokens for r in out] == [tokens[f"prompt {i}"] for i in range(12)]
    assert len(set(tokens.values())) > 6 and all(r.text for r in out)
    assert max(e.in_flight for e in log) == 3 and backend.peak_in_flight == 3
    assert log[-1].arrival - log[0].arrival >= 3 * 0.15  # 12 requests, 3 at a time: four waves


def test_retries_429_then_succeeds_with_backoff(backend_factory: Any) -> None:
    def script(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        return error(429, "slow down") if n < 2 else ok(n, body, headers)

    with FakeServer(script) as srv:
        backend = backend_factory(base_url=srv.base_url, backoff_base_s=0.2, backoff_max_s=5.0)
        [r] = backend.generate(reqs(1))
    assert not r.error and r.text == "reply to prompt 0"
    assert (r.prompt_tokens, r.completion_tokens, r.finish_reason) == (7, 2, "stop")
    times = [t for t, _, _ in srv.requests]
    assert len(times) == 3 and backend.retries == 2
    # Equal jitter: the waits are at least half of 0.2 s and 0.4 s.
    assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2
    assert r.latency_s >= 0.3


def test_retries_503_and_honours_retry_after(backend_factory: Any) -> None:
    def script(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        return error(503, "overloaded", {"retry-after": "0.6"}) if n < 1 else ok(n, body, headers)

    with FakeServer(script) as srv:
        backend = backend_factory(base_url=srv.base_url, backoff_base_s=0.01)
        [r] = backend.generate(reqs(1))
    assert not r.error
    times = [t for t, _, _ in srv.requests]
    assert len(times) == 2 and times[1] - times[0] >= 0.55


def test_gives_up_after_max_retries(backend_factory: Any) -> None:
    with FakeEndpoint(EndpointConfig(p_500=1.0)) as ep:
        backend = backend_factory(base_url=ep.base_url, max_retries=3)
        out = backend.generate(reqs(2))
        assert len(ep.log) == 2 * 4
    for r in out:
        assert r.text == "" and r.error.startswith("gave up after 4 attempts: HTTP 500 from "), r.error


def test_other_4xx_are_not_retried(backend_factory: Any) -> None:
    with FakeEndpoint(EndpointConfig(p_400=1.0)) as ep:
        backend = backend_factory(base_url=ep.base_url)
        [r] = backend.generate(reqs(1))
        assert len(ep.log) == 1
    # The server's own message, as it wrote it.
    assert r.error.startswith(f"HTTP 400 from {ep.base_url}: This model's maximum context length is 4096"), r.error


def test_api_key_is_sent_but_never_leaks(backend_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_KEY", SECRET)

    def echo_auth(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        # A careless gateway that echoes the credentials it rejects.
        return error(401, f"bad credentials: {headers.get('authorization')}")

    with FakeServer(echo_auth) as srv:
        backend = backend_factory(base_url=srv.base_url, api_key_env="TW_TEST_KEY")
        [r] = backend.generate(reqs(1))
    assert srv.requests[0][2]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in r.error and "TW_TEST_KEY" in r.error and "HTTP 401" in r.error
    assert SECRET not in repr(backend.__dict__.get("api_key_env"))


def test_placeholder_key_when_none_is_configured(backend_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_UNSET_KEY", raising=False)
    with FakeServer(ok) as srv:
        backend_factory(base_url=srv.base_url).generate(reqs(1))
        backend_factory(base_url=srv.base_url, api_key_env="TW_UNSET_KEY").generate(reqs(1))
    assert [h["authorization"] for _, _, h in srv.requests] == ["Bearer EMPTY", "Bearer EMPTY"]


def test_sampling_settings_are_sent(backend_factory: Any) -> None:
    with FakeServer(ok) as srv:
        backend_factory(base_url=srv.base_url, model="m1").generate(
            [
                GenRequest("a", "p", temperature=0.7, max_tokens=33, top_p=0.9, seed=5),
                GenRequest("b", "q", temperature=0.0, max_tokens=4),
            ]
        )
    bodies = sorted((b for _, b, _ in srv.requests), key=lambda b: b["messages"][0]["content"])
    assert bodies[0] == {
        "model": "m1",
        "messages": [{"role": "user", "content": "p"}],
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 33,
        "seed": 5,
    }
    assert "seed" not in bodies[1]


def test_timeouts_are_retried_then_reported(backend_factory: Any) -> None:
    with FakeServer(ok, delay_s=1.0) as srv:
        backend = backend_factory(base_url=srv.base_url, timeout_s=0.2, max_retries=1)
        [r] = backend.generate(reqs(1))
    assert len(srv.requests) == 2
    assert r.error == f"gave up after 2 attempts: no reply from {srv.base_url} within 0.2 s"


def test_unreachable_endpoint_gives_clear_per_request_errors_quickly(backend_factory: Any) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = backend_factory(base_url=base_url, max_retries=2)
    t0 = time.monotonic()
    out = backend.generate(reqs(5))
    assert time.monotonic() - t0 < 5
    for r in out:
        assert r.text == "" and f"cannot reach {base_url}" in r.error and "base_url" in r.error, r.error
        assert r.error.startswith("gave up after 3 attempts")


def test_malformed_reply_is_an_error_not_an_exception(backend_factory: Any) -> None:
    with FakeServer(lambda n, b, h: (200, {}, {"unexpected": True})) as srv:
        out = backend_factory(base_url=srv.base_url, max_retries=0).generate(reqs(2))
    assert all(r.error and not r.text for r in out), out


def test_generate_is_reusable_and_works_inside_a_running_loop(backend_factory: Any) -> None:
    with FakeEndpoint() as ep:
        backend = backend_factory(base_url=ep.base_url)
        assert len(backend.generate(reqs(3))) == 3
        assert backend.generate([]) == []

        async def from_async_code() -> int:
            return len(backend.generate(reqs(2)))

        assert asyncio.run(from_async_code()) == 2
        threads = [threading.Thread(target=backend.generate, args=(reqs(4),)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ep.log) == 3 + 2 + 12
    backend.close()
    with pytest.raises(RuntimeError):
        backend.generate(reqs(1))


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (parse_retry_after({"retry-after": future}) or 0) <= 31


# ---------------------------------------------------------------------------------------------
# Transient faults are retried; every error says whose it is (error_kind)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        (200, {"content-type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"),  # a proxy's page
        (200, {}, b'{"id": "chatcmpl-1", "object": "chat.comp'),  # JSON cut short
        (200, {}, b""),  # empty body
    ],
    ids=["html", "truncated", "empty"],
)
def test_http_200_that_is_not_json_is_retried(backend_factory: Any, first: Reply) -> None:
    from trustwatch.v1 import messages_pb2 as pb

    def script(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        return first if n == 0 else ok(n, body, headers)

    with FakeServer(script) as srv:
        backend = backend_factory(base_url=srv.base_url)
        [r] = backend.generate(reqs(1))
    assert not r.error, r.error
    assert r.text == "reply to prompt 0"
    assert len(srv.requests) == 2 and backend.retries == 1
    assert getattr(r, "error_kind", pb.ERROR_KIND_UNSPECIFIED) == pb.ERROR_KIND_UNSPECIFIED


def test_http_200_not_json_every_time_ends_transient(backend_factory: Any) -> None:
    from trustwatch.generator.backends._kinds import error_kind_of
    from trustwatch.v1 import messages_pb2 as pb

    with FakeServer(lambda n, b, h: (200, {"content-type": "text/plain"}, b"oops")) as srv:
        [r] = backend_factory(base_url=srv.base_url, max_retries=2).generate(reqs(1))
    assert len(srv.requests) == 3
    assert r.error.startswith("gave up after 3 attempts: HTTP 200 from ") and "not JSON" in r.error, r.error
    assert error_kind_of(r) == pb.ERROR_KIND_TRANSIENT


def test_http_200_with_a_json_body_that_is_not_an_object_ends_transient(backend_factory: Any) -> None:
    from trustwatch.generator.backends._kinds import error_kind_of
    from trustwatch.v1 import messages_pb2 as pb

    with FakeServer(lambda n, b, h: (200, {}, b'["choices"]')) as srv:
        [r] = backend_factory(base_url=srv.base_url, max_retries=1).generate(reqs(1))
    assert len(srv.requests) == 2
    assert "JSON body that is not an object" in r.error and error_kind_of(r) == pb.ERROR_KIND_TRANSIENT, r.error


def test_odd_fields_in_a_reply_give_empty_values_not_errors(backend_factory: Any) -> None:
    # usage counts that are not numbers, a message that is not an object, a null finish_reason
    odd = {
        "choices": [{"message": "not an object", "finish_reason": None}],
        "usage": {"prompt_tokens": "12", "completion_tokens": True},
    }
    with FakeServer(lambda n, b, h: (200, {}, odd)) as srv:
        [r] = backend_factory(base_url=srv.base_url, max_retries=0).generate(reqs(1))
    assert not r.error, r.error
    assert (r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens) == ("", "", 0, 0)


def test_an_error_body_that_is_not_json_is_quoted_in_the_error(backend_factory: Any) -> None:
    page = b"<html>" + b"x" * 2000 + b"</html>"
    with FakeServer(lambda n, b, h: (403, {"content-type": "text/html"}, page)) as srv:
        [r] = backend_factory(base_url=srv.base_url, max_retries=0).generate(reqs(1))
    assert r.error.startswith(f"HTTP 403 from {srv.base_url}: <html>xxx"), r.error
    assert len(r.error) < 800  # the body is cut, not copied whole


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "FINAL"),
        (401, "FINAL"),
        (404, "FINAL"),
        (422, "FINAL"),
        (408, "TRANSIENT"),
        (429, "TRANSIENT"),
        (500, "TRANSIENT"),
        (503, "TRANSIENT"),
    ],
)
def test_error_kind_by_status(backend_factory: Any, status: int, kind: str) -> None:
    from trustwatch.generator.backends._kinds import error_kind_of
    from trustwatch.v1 import messages_pb2 as pb

    with FakeServer(lambda n, b, h: error(status, "no")) as srv:
        [r] = backend_factory(base_url=srv.base_url, max_retries=1).generate(reqs(1))
    assert r.error and error_kind_of(r) == pb.ErrorKind.Value(f"ERROR_KIND_{kind}"), (status, r)


def test_unreachable_endpoint_is_transient(backend_factory: Any) -> None:
    from trustwatch.generator.backends._kinds import error_kind_of
    from trustwatch.v1 import messages_pb2 as pb

    backend = backend_factory(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    [r] = backend.generate(reqs(1))
    assert "cannot reach" in r.error and error_kind_of(r) == pb.ERROR_KIND_TRANSIENT


def test_reply_timeout_comes_from_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from trustwatch.platform.targets import parse_target

    spec = parse_target("openai:m@http://127.0.0.1:9/v1")
    monkeypatch.setenv("TRUSTWATCH_OPENAI_TIMEOUT_S", "2.5")
    backend = OpenAIBackend.from_target(spec)
    try:
        assert backend.timeout_s == 2.5
    finally:
        backend.close()
    monkeypatch.setenv("TRUSTWATCH_OPENAI_TIMEOUT_S", "soon")
    with pytest.raises(SystemExit, match="TRUSTWATCH_OPENAI_TIMEOUT_S='soon' is not a number"):
        OpenAIBackend.from_target(spec)


def _proxy_env(monkeypatch: pytest.MonkeyPatch, proxy: str, no_proxy: str = "") -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    if no_proxy:
        monkeypatch.setenv("no_proxy", no_proxy)


def test_requests_go_through_the_proxy_the_environment_names(
    backend_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted server plays the proxy: the endpoint's host does not resolve, so a reply can
    # only have come through it.
    with FakeServer(ok) as proxy:
        _proxy_env(monkeypatch, proxy.base_url.removesuffix("/v1"))
        results = backend_factory(base_url="http://endpoint.invalid/v1").generate(reqs(3))
    assert [r.text for r in results] == [f"reply to prompt {i}" for i in range(3)]
    assert len(proxy.requests) == 3


def test_no_proxy_sends_requests_straight_to_the_endpoint(
    backend_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeServer(ok) as srv:
        _proxy_env(monkeypatch, f"http://127.0.0.1:{free_port()}", no_proxy="127.0.0.1")  # nothing listens
        results = backend_factory(base_url=srv.base_url).generate(reqs(2))
    assert [r.text for r in results] == ["reply to prompt 0", "reply to prompt 1"] and len(srv.requests) == 2
