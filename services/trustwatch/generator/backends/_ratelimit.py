"""Client-side rate limits of an API target, as the ``openai`` back-end applies them to each attempt.

Three independent brakes, all on the back-end's event loop:

* :class:`AimdWindow`: the requests on the wire at once. It starts at the configured concurrency;
  an HTTP 429 halves it (once per round: a 429 on a request sent before the last cut does not cut
  again), and every ``window`` successes in a row add one back, never above the configured
  concurrency (additive increase, multiplicative decrease, as TCP does).
* :class:`TokenBucket`: a ceiling on requests per minute (``rpm``) or tokens per minute (``tpm``),
  so that one run does not spend a quota others share. It refills continuously and holds one
  second's worth, so requests go out evenly rather than a minute's worth at once. A request
  costing more than the bucket holds waits for a full bucket and takes it into debt: the long-run
  rate stays exact.
* :func:`hold_from_headers`: the server's own ``x-ratelimit-remaining-requests`` /
  ``-tokens`` and ``x-ratelimit-reset-requests`` / ``-tokens``; when a remaining count reaches
  0, new requests are held until the matching reset.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: The longest hold a server's reset header may impose; a larger value (or a hostile one) is cut.
MAX_HOLD_S = 120.0
#: The hold when a remaining count is 0 but the server gives no reset time.
DEFAULT_HOLD_S = 1.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")


def parse_duration(text: Any) -> float | None:
    """Seconds from a reset header: plain seconds (``"1.5"``) or Go-style (``"6m0s"``, ``"20ms"``,
    ``"1h2m3.5s"``), as OpenAI-compatible servers write ``x-ratelimit-reset-*``. None if unreadable."""
    if text is None:
        return None
    raw = str(text).strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * scale[u] for n, u in parts)


def hold_from_headers(headers: Any) -> float | None:
    """Seconds to hold new requests when the server says a quota is spent (a remaining count of 0),
    else None. Reads ``x-ratelimit-remaining-{requests,tokens}`` and ``x-ratelimit-reset-*``."""
    if headers is None:
        return None
    hold: float | None = None
    for kind in ("requests", "tokens"):
        try:
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            reset = headers.get(f"x-ratelimit-reset-{kind}")
        except Exception:  # noqa: BLE001 - odd header containers: treat as no header
            return None
        if remaining is None:
            continue
        try:
            spent = float(remaining) <= 0
        except ValueError:
            continue
        if spent:
            wait = parse_duration(reset)
            wait = DEFAULT_HOLD_S if wait is None else wait
            hold = max(hold or 0.0, min(wait, MAX_HOLD_S))
    return hold


def estimate_tokens(prompt: str, max_tokens: int) -> int:
    """What a request costs against a tokens-per-minute quota: its prompt (about four characters a
    token, plus the chat overhead) and all the tokens it may generate, as providers count it."""
    return math.ceil(len(prompt) / 4) + 8 + max(0, max_tokens)


class TokenBucket:
    """``per_minute`` units refilled continuously; holds one second's worth (at least 1)."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._clock = clock
        self.level = self.capacity
        self._t = clock()
        self._lock: asyncio.Lock | None = None

    def delay(self, cost: float) -> float:
        """Seconds until ``cost`` may be taken (0: now)."""
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, cost: float) -> None:
        self.level -= cost

    async def acquire(self, cost: float) -> float:
        """Wait until ``cost`` is available, in arrival order, and take it; returns the seconds waited."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:
            while (d := self.delay(cost)) > 0:
                waited += d
                await asyncio.sleep(d)
            self.take(cost)
        return waited


class AimdWindow:
    """How many requests may be on the wire: ``limit`` at most, halved on overload, +1 per
    ``window`` successes. :meth:`acquire` waits for a free place and returns the round it was
    granted in (pass it to :meth:`overloaded`); :meth:`release` frees it. Waiters are served in order."""

    def __init__(self, limit: int, adaptive: bool = True) -> None:
        if limit < 1:
            raise ValueError(f"concurrency must be at least 1, got {limit}")
        self.limit = limit
        self.adaptive = adaptive
        self.window = limit
        self.in_use = 0
        #: Rounds: bumped by every cut; a 429 on a request granted in an older round does not cut again.
        self.round = 0
        self.decreases = 0
        self.increases = 0
        #: The smallest window so far.
        self.low = limit
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        if self.in_use < self.window and not self._waiters:
            self.in_use += 1
            return self.round
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted, then cancelled before use: give the place back
            else:
                self._waiters.remove(fut)
            raise
        return self.round

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.window:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_use += 1
                fut.set_result(None)

    def succeeded(self) -> None:
        if not self.adaptive or self.window >= self.limit:
            return
        self._successes += 1
        if self._successes >= self.window:
            self._successes = 0
            self.window += 1
            self.increases += 1
            self._wake()

    def overloaded(self, granted_round: int) -> None:
        """The server refused a request for load (HTTP 429): halve the window, once per round."""
        if not self.adaptive or granted_round != self.round:
            return
        self.round += 1
        self._successes = 0
        if self.window > 1:
            self.window = max(1, self.window // 2)
            self.decreases += 1
            self.low = min(self.low, self.window)
