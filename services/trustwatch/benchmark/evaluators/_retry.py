"""Retries with exponential back-off for evaluators that call remote endpoints (judge LLM, embeddings,
Perspective).

Retries live in this one layer: callers switch their client library's own retries off (the openai
client is built with ``max_retries=0``), so a request is tried at most ``1 + RetryPolicy.retries``
times in all and the waits are bounded here, where they can be reasoned about.

Also here: small helpers every remote back-end needs to word its failures without leaking secrets.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

#: HTTP statuses worth another try: rate limiting, request timeout, conflict (OpenAI uses it for
#: "try again"), and any server-side error.
RETRYABLE_STATUS = frozenset({408, 409, 429})


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    The wait before retry ``k`` (0-based) is drawn from ``[step/2, step]`` with
    ``step = min(max_backoff_s, backoff_s * 2**k)``: jitter so that concurrent workers that failed
    together do not retry together, and at least half a step so that retries really back off. A
    server's ``Retry-After`` is honoured when longer, up to ``max_retry_after_s``.
    """

    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("back-off times must be >= 0")

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, retry: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        step = min(self.max_backoff_s, self.backoff_s * (2**retry))
        wait = (rng or random).uniform(step / 2, step)
        if retry_after_s is not None and retry_after_s > wait:
            wait = min(retry_after_s, self.max_retry_after_s)
        return wait


@dataclass(frozen=True)
class Retry:
    """What a classifier says about a failure: try again?, and after how long at least."""

    again: bool
    after_s: float | None = None


class GaveUp(Exception):
    """The call failed for good: not retryable, retries spent, or stopped. ``__cause__`` is the last error."""

    def __init__(self, last: BaseException, attempts: int, retryable: bool) -> None:
        super().__init__(f"{type(last).__name__} after {attempts} attempt(s)")
        self.last = last
        self.attempts = attempts
        self.retryable = retryable


def call_with_retries(
    fn: Callable[[], T],
    classify: Callable[[Exception], Retry],
    policy: RetryPolicy,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_retry: Callable[[int, Exception, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it returns, retrying the failures ``classify`` calls retryable.

    ``stop`` is checked before each retry, so that a batch that already knows its endpoint is down
    does not keep every worker waiting out its back-off. Raises :class:`GaveUp` from the last error.
    """
    retry = 0
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as GaveUp
            verdict = classify(exc)
            if not verdict.again or retry >= policy.retries or stop():
                raise GaveUp(exc, retry + 1, verdict.again) from exc
            wait = policy.delay(retry, verdict.after_s)
            if on_retry is not None:
                on_retry(retry, exc, wait)
            sleep(wait)
            retry += 1


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait, from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(0.0, float(lower["retry-after-ms"]) / 1000.0)
        raw = lower.get("retry-after")
        if raw is None:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            when = email.utils.parsedate_to_datetime(raw)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment, for messages (keys hide in all three)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


_BEARER = re.compile(r"(\b[Bb]earer\s+)[^\s\"',;}]+")


def scrub(text: str, *secrets: str, limit: int = 300) -> str:
    """``text`` with every secret replaced by ``***``, on one line, cut to ``limit`` characters."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    text = _BEARER.sub(r"\1***", text)  # a credential an endpoint echoes back, whatever its value
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a ``raise ... from`` / context chain (e.g. the socket error under
    an SDK's generic "Connection error.")."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt
