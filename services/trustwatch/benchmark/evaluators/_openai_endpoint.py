"""One OpenAI-compatible endpoint as evaluators use it (judge chat completions, embeddings).

The openai client is built with ``max_retries=0``: retries are done once, by :mod:`._retry`, so the
number of attempts and the total wait are known. Failures come out as :class:`EndpointError` with a
one-line message that names the endpoint (URL without credentials) and the reason, never the key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trustwatch.benchmark.evaluators._retry import (
    GaveUp,
    Retry,
    RetryPolicy,
    call_with_retries,
    retry_after_seconds,
    retryable_status,
    root_cause,
    safe_url,
    scrub,
)
from trustwatch.platform.extras import BASE_INSTALL, require

T = TypeVar("T")

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Sent when the key variable is unset: local OpenAI-compatible servers (vLLM) want no key, but the
#: openai client refuses to start without one.
NO_KEY = "EMPTY"


class EndpointError(Exception):
    """A request that failed for good. ``unreachable`` is True when nothing answered at all
    (connection refused, DNS), so that the rest of a batch need not try. ``status`` is the last HTTP
    status, when there was one."""

    def __init__(self, message: str, unreachable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.status = status


def classify_openai_error(exc: Exception) -> Retry:
    """Which openai exceptions are worth another try: timeouts, dropped connections, 408/409/429/5xx."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        headers = getattr(exc.response, "headers", None)
        return Retry(retryable_status(exc.status_code), retry_after_seconds(headers))
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return Retry(True)
    return Retry(False)


@dataclass
class OpenAIEndpoint:
    """Settings and lazily-built client of one endpoint; thread-safe (the openai client is)."""

    what: str  # "judge endpoint", "embedding endpoint": the start of every failure message
    base_url: str = OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    _client: Any = field(default=None, init=False, repr=False)
    _key: str = field(default="", init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url or OPENAI_BASE_URL
        if self.timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout_s}")

    @property
    def label(self) -> str:
        return f"{self.what} {safe_url(self.base_url)}"

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                openai = require("openai", f"the {self.what}", BASE_INSTALL)

                # The key is read when the first request is made, not at import or registry time.
                self._key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
                self._client = openai.OpenAI(
                    base_url=self.base_url,
                    api_key=self._key or NO_KEY,
                    max_retries=0,  # retries are ours (one layer)
                    timeout=self.timeout_s,
                )
            return self._client

    def call(
        self,
        fn: Callable[[Any], T],
        *,
        stop: Callable[[], bool] = lambda: False,
        on_attempt: Callable[[], None] | None = None,
        on_retry: Callable[[int, Exception, float], None] | None = None,
    ) -> T:
        """``fn(client)`` with retries; raises :class:`EndpointError` with a clear message."""
        client = self.client()

        def attempt() -> T:
            if on_attempt is not None:
                on_attempt()
            return fn(client)

        try:
            return call_with_retries(attempt, classify_openai_error, self.policy, stop=stop, on_retry=on_retry)
        except GaveUp as gave_up:
            raise self._error(gave_up) from gave_up.last

    def _error(self, gave_up: GaveUp) -> EndpointError:
        import openai

        exc, n = gave_up.last, gave_up.attempts
        tries = f"{n} attempt{'s' if n != 1 else ''}"
        if isinstance(exc, openai.APITimeoutError):
            return EndpointError(f"{self.label}: timed out after {self.timeout_s:g} s ({tries})")
        if isinstance(exc, openai.APIConnectionError):
            cause = root_cause(exc)
            reason = scrub(str(cause) or type(cause).__name__, self._key)
            return EndpointError(f"{self.label}: unreachable ({reason}) after {tries}", unreachable=True)
        if isinstance(exc, openai.APIStatusError):
            body = scrub(_status_message(exc), self._key)
            hint = ""
            if exc.status_code in (401, 403):
                hint = f" (check the key in ${self.api_key_env})" if self.api_key_env else " (no key configured)"
            return EndpointError(
                f"{self.label}: HTTP {exc.status_code}{hint} after {tries}: {body}", status=exc.status_code
            )
        return EndpointError(f"{self.label}: {type(exc).__name__}: {scrub(str(exc), self._key)}")


def _status_message(exc: Any) -> str:
    """The server's own error text (OpenAI and vLLM put it under body.message or body.error.message)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", "") or exc)
