"""Client-side rate limits of an API target, as the ``openai`` back-end applies them to each attempt.

Three independent brakes, all on the back-end's event loop:

* :class:`AimdWindow`: the requests on the wire at once. It starts at the configured concurrency;
  it is halved when more than half of a sample of outcomes (a round's worth, at least 16) are
  HTTP 429s, at most once per round, and every ``window`` successes add one back, never above the
  configured concurrency (additive increase, multiplicative decrease, as TCP does). A few 429s
  among successes (a gateway refusing a share at random) leave it whole: each refused request
  waits out its own ``Retry-After``.
* :class:`TokenBucket`: a ceiling on requests per minute (``rpm``) or tokens per minute (``tpm``),
  so that one run does not spend a quota others share. It refills continuously and holds one
  second's worth, so requests go out evenly rather than a minute's worth at once. A request
  costing more than the bucket holds waits for a full bucket and takes it into debt: the long-run
  rate stays exact.
* :class:`QuotaHold`: the server's own ``x-ratelimit-remaining-requests`` / ``-tokens`` and
  ``x-ratelimit-reset-requests`` / ``-tokens`` (:func:`hold_from_headers`); when a remaining count
  reaches 0, new requests are held until the matching reset, or until a request sent after that
  reply succeeds (the server admits requests again).
"""

from __future__ import annotations

import asyncio
import contextlib
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
        # (a deficit of rounding error is none: waiting it out would not move a clock that coarse)
        return 0.0 if self.level >= need - 1e-9 else (need - self.level) / self.rate

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
    """How many requests may be on the wire: ``limit`` at most, halved when the server refuses a
    large share of them for load (HTTP 429), +1 per ``window`` successes.

    A single 429 among successes is not overload: a gateway may refuse a share of requests at
    random, or a neighbour's burst may cost one refusal, and the refused request already waits out
    its own ``Retry-After``. So the window is judged on a *sample* of outcomes, as a TCP sender
    judges a round trip and not one lost packet: the outcomes (success or 429) of requests granted
    since the last cut, ``max(window, min_sample)`` of them. When the sample is full, a 429 share
    above ``overload_share`` halves the window and starts a new round; otherwise the sample starts
    again with nothing changed. Requests granted before a cut do not count in the next sample (they
    went out under the larger window), so the window is cut at most once per round. Every
    ``window`` successes add one place back, never above ``limit`` (additive increase).

    :meth:`acquire` waits for a free place and returns the round it was granted in (pass it to
    :meth:`succeeded` / :meth:`overloaded`); :meth:`release` frees it. Waiters are served in order.
    """

    def __init__(self, limit: int, adaptive: bool = True, overload_share: float = 0.5, min_sample: int = 16) -> None:
        if limit < 1:
            raise ValueError(f"concurrency must be at least 1, got {limit}")
        if not 0.0 <= overload_share < 1.0 or min_sample < 1:
            raise ValueError(
                f"overload_share must lie in [0, 1) and min_sample be >= 1, got {overload_share}, {min_sample}"
            )
        self.limit = limit
        self.adaptive = adaptive
        self.overload_share = overload_share
        self.min_sample = min_sample
        self.window = limit
        self.in_use = 0
        #: Rounds: bumped by every cut; outcomes of requests granted in an older round are not sampled.
        self.round = 0
        self.decreases = 0
        self.increases = 0
        #: The smallest window so far.
        self.low = limit
        #: The current sample: successes and 429s of requests granted in this round.
        self.sample_ok = 0
        self.sample_refused = 0
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

    def succeeded(self, granted_round: int) -> None:
        """A request granted in ``granted_round`` was answered (not refused for load)."""
        if not self.adaptive:
            return
        if granted_round == self.round:
            self.sample_ok += 1
            self._judge()
        if self.window >= self.limit:
            return
        self._successes += 1
        if self._successes >= self.window:
            self._successes = 0
            self.window += 1
            self.increases += 1
            self._wake()

    def overloaded(self, granted_round: int) -> None:
        """The server refused a request granted in ``granted_round`` for load (HTTP 429)."""
        if not self.adaptive or granted_round != self.round:
            return
        self.sample_refused += 1
        self._judge()

    def _judge(self) -> None:
        total = self.sample_ok + self.sample_refused
        if total < max(self.window, self.min_sample):
            return
        overloaded = self.sample_refused > self.overload_share * total
        self.sample_ok = self.sample_refused = 0
        if not overloaded:
            return
        self.round += 1
        self._successes = 0
        if self.window > 1:
            self.window = max(1, self.window // 2)
            self.decreases += 1
            self.low = min(self.low, self.window)


class QuotaHold:
    """The server's word that a quota is spent: new requests wait until its reset, unless the
    server shows otherwise first.

    A reply whose ``x-ratelimit-remaining-requests`` or ``-tokens`` is 0 holds every new request
    until the matching ``x-ratelimit-reset-*`` (:func:`hold_from_headers`). The freshest word wins:
    requests are numbered as they go on the wire (:meth:`sent`), and a success of a request sent
    *after* the one whose reply imposed the hold proves the server admits requests again (its quota
    reset early, or the 429 was not a quota at all, e.g. a gateway refusing a share at random), so
    it lifts the hold at once; likewise a reply saying the quota is spent imposes no hold when a
    request sent after it has already succeeded. A success sent before it proves nothing (it was
    admitted before the quota ran out), and its own headers still count: a success saying
    ``remaining: 0`` imposes a hold of its own. ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: Clock time before which no new request goes out.
        self.until = 0.0
        #: Holds imposed, holds lifted early by a later request's success, and spent-quota replies
        #: ignored because a request sent after them had already succeeded.
        self.holds = 0
        self.lifted = 0
        self.stale = 0
        self._sent = 0
        self._hold_seq = 0
        self._fresh = 0  # the last-sent request that succeeded
        self._lift: asyncio.Event | None = None

    def sent(self) -> int:
        """Number a request as it goes on the wire (1, 2, ...); pass the number to :meth:`observe`."""
        self._sent += 1
        return self._sent

    def delay(self) -> float:
        """Seconds until new requests may go out (0: now)."""
        return max(0.0, self.until - self._clock())

    def observe(self, seq: int, headers: Any, ok: bool) -> float | None:
        """Note the reply to request ``seq`` (``ok``: answered, not refused); returns the hold its
        headers impose (seconds), if any."""
        now = self._clock()
        if ok and seq > self._hold_seq and self.until > now:
            self.until = now
            self.lifted += 1
            if self._lift is not None:
                self._lift.set()  # wake the waiters now, not at the reset they were told
                self._lift = None
        if ok:
            self._fresh = max(self._fresh, seq)
        hold = hold_from_headers(headers)
        if not hold:
            return None
        if seq < self._fresh:
            self.stale += 1
            return None
        if self.until <= now:
            self._hold_seq = seq  # a fresh hold: only requests sent after this one may lift it
            self.holds += 1
        else:
            self._hold_seq = max(self._hold_seq, seq)
        self.until = max(self.until, now + hold)
        return hold

    async def wait(self) -> float:
        """Wait while a hold lasts (woken at once if it is lifted); returns the seconds waited."""
        waited = 0.0
        while (d := self.delay()) > 0:
            if self._lift is None:
                self._lift = asyncio.Event()
            t = self._clock()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lift.wait(), d)
            waited += self._clock() - t
        return waited
