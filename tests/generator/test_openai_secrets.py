"""No secret in any log line, at any level, nor in a result's error: an endpoint that echoes the
Authorization header (or the request URL) in its 5xx bodies must not get the key into either."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.generator.test_openai_backend import FakeServer, Reply, error, reqs
from trustwatch.benchmark.evaluators._retry import scrub
from trustwatch.generator.backends.openai_api import OpenAIBackend

KEY = "sk-canary-7d41f0c2b9e8a6"


def echo_auth_500(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
    return error(500, f"internal error while checking {headers.get('authorization')} for you")


def test_retry_logs_and_the_final_error_never_hold_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TW_CANARY_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with FakeServer(echo_auth_500) as srv:
        backend = OpenAIBackend(
            model="fake",
            base_url=srv.base_url,
            api_key_env="TW_CANARY_API_KEY",
            max_retries=2,
            backoff_base_s=0.01,
            backoff_max_s=0.02,
        )
        try:
            [r] = backend.generate(reqs(1))
        finally:
            backend.close()
    # The key was really sent, and really echoed back, three times.
    assert len(srv.requests) == 3 and srv.requests[0][2]["authorization"] == f"Bearer {KEY}"
    retry_lines = [rec for rec in caplog.records if "retry" in rec.getMessage()]
    assert len(retry_lines) == 2 and "HTTP 500" in retry_lines[0].getMessage()
    assert "***" in retry_lines[0].getMessage()
    logged = "\n".join(rec.getMessage() + (rec.exc_text or "") for rec in caplog.records)
    assert KEY not in logged and KEY not in caplog.text
    assert "HTTP 500" in r.error and "gave up after 3 attempts" in r.error
    assert KEY not in r.error and "***" in r.error


def test_a_bearer_credential_is_redacted_even_when_it_is_not_our_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No key configured (the placeholder is sent): a gateway that injects its own bearer token and
    echoes it must not get that token into the logs or results either."""
    caplog.set_level(logging.DEBUG)

    def echo_other(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        return error(503, f"upstream rejected Bearer {KEY}")

    with FakeServer(echo_other) as srv:
        backend = OpenAIBackend(
            model="fake", base_url=srv.base_url, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02
        )
        try:
            [r] = backend.generate(reqs(1))
        finally:
            backend.close()
    assert KEY not in r.error and KEY not in caplog.text and "Bearer ***" in r.error


def test_error_text_never_shows_url_user_info() -> None:
    """parse_target refuses such URLs (httpx itself would log them); a back-end built in code still
    words its errors without the user info."""
    backend = OpenAIBackend(model="fake", base_url=f"http://alice:pw-{KEY}@127.0.0.1:9/v1")
    try:
        cleaned = backend._clean(f"cannot reach {backend.base_url}: refused")
    finally:
        backend.close()
    assert cleaned == "cannot reach http://127.0.0.1:9/v1: refused"


def test_scrub_redacts_bearer_credentials_and_given_secrets() -> None:
    assert scrub(f"denied: Bearer {KEY}; bye") == "denied: Bearer ***; bye"
    assert KEY not in scrub(f'{{"authorization": "bearer {KEY}"}}')
    assert scrub(f"key {KEY} echoed", KEY) == "key *** echoed"
