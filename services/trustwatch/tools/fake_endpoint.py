"""A fake OpenAI-compatible endpoint for tests and benchmarks: seeded latency, reply lengths and
faults, an optional rate limit, and a log of every request.

It answers ``POST /v1/chat/completions`` and ``GET /v1/models`` from one asyncio event loop
(aiohttp), so one core serves thousands of requests per second; what it costs is what it is told
to cost (the latency draw), not its own overhead.

Every random choice for a request (latency, reply length and text, fault) is drawn from a generator
seeded with ``(seed, the request, how many times that request has arrived before)``, where the
request is its model, messages and max_tokens (not its bytes: two clients that serialize the same
request differently, or add sampling defaults such as ``top_p``, meet the same draws): the same
requests get the same replies whatever order they arrive in, and a retry of a request gets a fresh
draw (with ``redraw_repeats=False``, the same draw: a benchmark's repeated runs, and its different
clients, then meet the same latencies). Rate limits depend on time and are not seeded.

* **Latency**: ``lognormal`` (``median_s``, ``sigma``), ``constant`` (``median_s``) or ``zero``.
* **Replies**: ``completion_tokens`` = a lognormal draw (``reply_median_tokens``,
  ``reply_sigma``) cut at the request's ``max_tokens`` (``finish_reason`` then ``length``, else
  ``stop``); the text has that many word-tokens; ``prompt_tokens`` ~ characters / 4 + overhead.
* **Faults**, by seeded fractions of requests: ``p_400`` (a final error: the prompt is too long
  for the window), ``p_429`` (with ``Retry-After`` and ``retry-after-ms``, and, unless
  ``quota_429`` is off, ``x-ratelimit-*`` headers saying the quota is spent), ``p_500``,
  ``p_503``, ``p_hang`` (no reply for ``hang_s``: the client times out), ``p_drop`` (the
  connection is closed without a reply), ``p_not_json`` (an HTTP 200 whose body is an HTML page,
  JSON cut short, or empty), ``p_odd`` (an HTTP 200 whose text holds a NUL, an escaped lone
  surrogate, or is ``long_reply_chars`` long).
* **Refusals**: a share of prompts (``refusal_share``; ``refusal_match_share`` for the prompts the
  regex ``refusal_match`` finds) is answered with the plain refusal :data:`REFUSAL`. Whether a prompt is
  refused is decided by its text and the seed alone (a uniform draw below the share), like a model with
  a fixed policy: the same prompt gets the same answer in every run, and raising a share only adds
  refusals, so two runs differ exactly where the share changed.
* **Rate limit** (``rpm``, ``tpm``): token buckets refilled continuously, holding one second's
  worth (quota enforced per second, as large providers do); a request over it gets a 429 with
  ``Retry-After``; every reply then carries ``x-ratelimit-limit/remaining/reset-requests`` and
  ``-tokens``. A request costs its prompt tokens plus its ``max_tokens``.
* **Server slots** (``max_concurrency``, 0: unlimited): requests beyond it queue (their ``start``
  is later than their ``arrival``).
* **Log**: one :class:`LogEntry` per request (arrival, start, end, status, requests in the server
  at arrival, ...), seconds since the endpoint started; :attr:`FakeEndpoint.log`, and a JSONL file
  when ``log_path`` is given.

In-process: ``with FakeEndpoint(EndpointConfig(seed=0)) as ep: ... ep.base_url ... ep.log``
(127.0.0.1, a free port, a background thread). As a process:
``python -m trustwatch.tools.fake_endpoint --port 8000 --seed 0 --latency lognormal --median-s 0.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import math
import random
import re
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiohttp import web

#: Word-tokens the reply text is made of (about four characters each, like real tokens).
_WORDS = (
    "the of and to in is that it for as with was on be by this are at from or an have not but "
    "model reply token text some more data each test fake will can one all its also may into"
).split()
#: The reply to a refused prompt.
REFUSAL = "I'm sorry, but I can't help with that request."
#: Faults in the order the cumulative fractions are laid out.
FAULTS = ("400", "429", "500", "503", "hang", "drop", "not_json", "odd")


@dataclass(frozen=True)
class EndpointConfig:
    seed: int = 0
    model: str = "fake"
    latency: str = "zero"  # lognormal | constant | zero
    median_s: float = 0.2
    sigma: float = 1.0
    reply_median_tokens: float = 48.0
    reply_sigma: float = 1.0
    default_max_tokens: int = 4096
    p_400: float = 0.0
    p_429: float = 0.0
    p_500: float = 0.0
    p_503: float = 0.0
    p_hang: float = 0.0
    p_drop: float = 0.0
    p_not_json: float = 0.0
    p_odd: float = 0.0
    retry_after_s: float = 1.0  # the Retry-After of an injected 429
    # An injected 429 also says the request quota is spent (x-ratelimit-remaining-requests: 0 until
    # Retry-After), as a provider's quota refusal does; False: Retry-After alone, as an overloaded
    # server or a gateway refusing a share of requests answers.
    quota_429: bool = True
    hang_s: float = 300.0
    long_reply_chars: int = 200_000
    rpm: float = 0.0  # requests per minute (0: no limit)
    tpm: float = 0.0  # tokens per minute (0: no limit)
    max_concurrency: int = 0  # server slots (0: unlimited)
    redraw_repeats: bool = True  # a body seen before gets a fresh draw (False: the same one, for benchmarks)
    refusal_share: float = 0.0  # share of prompts answered with REFUSAL (decided per prompt text)
    refusal_match: str = ""  # a regex: prompts it finds are refused at refusal_match_share instead
    refusal_match_share: float = 0.0

    def __post_init__(self) -> None:
        if self.latency not in ("lognormal", "constant", "zero"):
            raise ValueError(f"latency must be lognormal, constant or zero, got {self.latency!r}")
        fractions = [getattr(self, f"p_{f}") for f in FAULTS]
        if any(p < 0 for p in fractions) or sum(fractions) > 1.0 + 1e-9:
            raise ValueError(f"fault fractions must be >= 0 and sum to at most 1, got {fractions}")
        if self.median_s < 0 or self.sigma < 0 or self.rpm < 0 or self.tpm < 0:
            raise ValueError("median_s, sigma, rpm and tpm must be >= 0")
        if not (0 <= self.refusal_share <= 1 and 0 <= self.refusal_match_share <= 1):
            raise ValueError("refusal_share and refusal_match_share must lie in [0, 1]")
        try:
            re.compile(self.refusal_match)
        except re.error as e:
            raise ValueError(f"refusal_match is no regular expression: {e}") from e

    def refuses(self, prompt: str) -> bool:
        """Whether ``prompt`` is answered with :data:`REFUSAL` (seeded by the prompt's text only)."""
        share = self.refusal_share
        if self.refusal_match and re.search(self.refusal_match, prompt):
            share = self.refusal_match_share
        if share <= 0:
            return False
        digest = hashlib.blake2b(f"{self.seed}/refusal/{prompt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < share


@dataclass(frozen=True)
class LogEntry:
    """One request. Times are seconds since the endpoint started; ``status`` 0: no reply was sent
    (a dropped connection, or a hang the client gave up on)."""

    n: int  # arrival order, from 0
    arrival: float
    start: float  # when a server slot was free (== arrival without max_concurrency)
    end: float
    status: int
    in_flight: int  # requests in the server at this one's arrival, itself included
    fault: str  # "" or one of FAULTS, or "rate_limit"
    model: str
    latency_s: float  # the latency drawn
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int
    prompt_head: str  # the first 80 characters of the last message: which request this was


def go_duration(seconds: float) -> str:
    """``seconds`` the way the ``x-ratelimit-reset-*`` headers write it: ``1.5s``, ``2m0.25s``, ``20ms``."""
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class _Bucket:
    """A token bucket: ``per_minute`` refilled continuously, holding one second's worth (at least
    one request's cost: a request costing more than that may take the bucket into debt)."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.t = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def wait_for(self, cost: float) -> float:
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(int(self.limit)),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(self.level))),
            f"x-ratelimit-reset-{kind}": go_duration((self.capacity - self.level) / self.rate),
        }


def prompt_tokens_of(messages: Any) -> int:
    """A plausible prompt token count: about four characters per token, plus per-message overhead."""
    total = 3
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content", "") if isinstance(m, dict) else ""
            total += 4 + math.ceil(len(content if isinstance(content, str) else json.dumps(content)) / 4)
    return total


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return web.json_response(body, status=status, headers=headers)


class _Server:
    """The aiohttp application and its state; lives on the endpoint's event loop."""

    def __init__(self, config: EndpointConfig, log_file: IO[str] | None) -> None:
        self.config = config
        self.t0 = time.perf_counter()
        self.entries: list[LogEntry] = []
        self.log_file = log_file
        self.in_flight = 0
        self.arrivals = 0
        self.seen: dict[bytes, int] = {}
        self.lock = threading.Lock()  # entries are read from other threads
        self.slots: asyncio.Semaphore | None = None
        self.buckets: dict[str, _Bucket] = {}
        self.reconfigure(config)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def reconfigure(self, config: EndpointConfig) -> None:
        old = self.config
        self.config = config
        if config.max_concurrency != old.max_concurrency or self.slots is None:
            self.slots = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
        now = self.now()
        for kind, limit in (("requests", config.rpm), ("tokens", config.tpm)):
            if not limit:
                self.buckets.pop(kind, None)
            elif kind not in self.buckets or self.buckets[kind].limit != limit:
                self.buckets[kind] = _Bucket(limit, now)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.config.model, "object": "model", "owned_by": "fake"}]}
        )

    def _rng(self, body: dict[str, Any]) -> random.Random:
        # The request's content, not its bytes: clients that serialize the same request differently
        # (key order, spacing, sampling defaults such as top_p) meet the same draws.
        key = json.dumps(
            [body.get("model"), body.get("messages"), body.get("max_tokens"), body.get("max_completion_tokens")],
            sort_keys=True,
        )
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        k = 0
        if self.config.redraw_repeats:
            k = self.seen.get(digest, 0)
            self.seen[digest] = k + 1
        return random.Random(f"{self.config.seed}/{digest.hex()}/{k}")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        arrival = self.now()
        n = self.arrivals
        self.arrivals += 1
        self.in_flight += 1
        entry: dict[str, Any] = {
            "n": n,
            "arrival": arrival,
            "start": arrival,
            "status": 0,
            "in_flight": self.in_flight,
            "fault": "",
            "model": "",
            "latency_s": 0.0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "max_tokens": 0,
            "prompt_head": "",
        }
        try:
            if self.slots is not None:
                async with self.slots:
                    entry["start"] = self.now()
                    return await self._answer(request, cfg, entry)
            return await self._answer(request, cfg, entry)
        finally:
            self.in_flight -= 1
            self._record(LogEntry(end=self.now(), **entry))

    def _record(self, entry: LogEntry) -> None:
        with self.lock:
            self.entries.append(entry)
        if self.log_file is not None:
            self.log_file.write(json.dumps(dataclasses.asdict(entry)) + "\n")

    async def _answer(self, request: web.Request, cfg: EndpointConfig, entry: dict[str, Any]) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as e:
            entry["status"] = 400
            return _error(400, f"invalid request body: {e}", "invalid_request_error")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or cfg.default_max_tokens)
        prompt_tokens = prompt_tokens_of(messages)
        last = messages[-1].get("content", "") if isinstance(messages[-1], dict) else ""
        entry.update(
            model=str(body.get("model", "")),
            max_tokens=max_tokens,
            prompt_tokens=prompt_tokens,
            prompt_head=(last if isinstance(last, str) else json.dumps(last))[:80],
        )
        rng = self._rng(body)

        limit_headers: dict[str, str] = {}
        if self.buckets:
            now = self.now()
            costs = {"requests": 1.0, "tokens": float(prompt_tokens + max_tokens)}
            for b in self.buckets.values():
                b.refill(now)
            wait = max(b.wait_for(costs[k]) for k, b in self.buckets.items())
            if wait > 0:
                for k, b in self.buckets.items():
                    limit_headers.update(b.headers(k))
                limit_headers.update(_retry_after(wait))
                entry.update(status=429, fault="rate_limit")
                return _error(429, "Rate limit reached; retry after the reset", "rate_limit_exceeded", limit_headers)
            for k, b in self.buckets.items():
                b.level -= costs[k]
                limit_headers.update(b.headers(k))

        latency = _draw_latency(cfg, rng)
        entry["latency_s"] = latency
        fault = _draw_fault(cfg, rng)
        entry["fault"] = fault
        if fault == "hang":
            await asyncio.sleep(cfg.hang_s)
        elif latency > 0:
            await asyncio.sleep(latency)
        if fault == "429":
            headers = _retry_after(cfg.retry_after_s)
            if cfg.quota_429:
                headers |= {
                    "x-ratelimit-limit-requests": "1",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": go_duration(cfg.retry_after_s),
                }
            entry["status"] = 429
            return _error(429, "Rate limit reached (injected)", "rate_limit_exceeded", headers)
        if fault == "400":
            entry["status"] = 400
            return _error(
                400,
                f"This model's maximum context length is 4096 tokens; the messages and max_tokens ask for "
                f"{prompt_tokens + max_tokens + 4096} (injected)",
                "invalid_request_error",
                limit_headers,
            )
        if fault in ("500", "503"):
            entry["status"] = int(fault)
            return _error(int(fault), f"injected HTTP {fault}", "server_error", limit_headers)
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=200)
        if fault == "not_json":
            entry["status"] = 200
            variant = rng.randrange(3)
            if variant == 0:
                return web.Response(
                    body=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
                )
            if variant == 1:
                return web.Response(body=b'{"id": "chatcmpl-x", "object": "chat.comp', content_type="application/json")
            return web.Response(body=b"", content_type="application/json")

        completion_tokens = min(
            max_tokens,
            max(1, round(cfg.reply_median_tokens * math.exp(cfg.reply_sigma * rng.gauss(0.0, 1.0)))),
        )
        finish = "length" if completion_tokens >= max_tokens else "stop"
        text = " ".join(rng.choices(_WORDS, k=completion_tokens))
        if isinstance(last, str) and cfg.refuses(last):
            text, finish = REFUSAL, "stop"
            completion_tokens = len(REFUSAL.split())
        odd = rng.randrange(3) if fault == "odd" else -1
        if odd == 0:
            text = "before\x00after " + text
        elif odd == 2:
            text = ((text + " ") * (cfg.long_reply_chars // (len(text) + 1) + 1))[: cfg.long_reply_chars]
        reply = {
            "id": f"chatcmpl-{entry['n']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": entry["model"] or cfg.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        data = json.dumps(reply)
        if odd == 1:
            # A lone surrogate, escaped: valid JSON, but no valid UTF-8 text once decoded.
            data = data.replace('"content": "', '"content": "odd \\ud800 ', 1)
        entry.update(status=200, completion_tokens=completion_tokens)
        return web.Response(text=data, content_type="application/json", headers=limit_headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}


def _draw_latency(cfg: EndpointConfig, rng: random.Random) -> float:
    z = rng.gauss(0.0, 1.0)  # drawn whatever the kind, so switching kinds keeps the other draws aligned
    if cfg.latency == "zero":
        return 0.0
    if cfg.latency == "constant":
        return cfg.median_s
    return cfg.median_s * math.exp(cfg.sigma * z)


def _draw_fault(cfg: EndpointConfig, rng: random.Random) -> str:
    u = rng.random()
    edge = 0.0
    for name in FAULTS:
        edge += getattr(cfg, f"p_{name}")
        if u < edge:
            return name
    return ""


class FakeEndpoint:
    """The fake endpoint on 127.0.0.1, in a background thread with its own event loop; a context
    manager. ``port=0`` picks a free port; :attr:`base_url` is the ``.../v1`` URL to give a client."""

    def __init__(
        self, config: EndpointConfig | None = None, port: int = 0, host: str = "127.0.0.1", log_path: Path | None = None
    ) -> None:
        self.host = host
        self._port = port
        self._config = config or EndpointConfig()
        self._log_path = log_path
        self._log_file: IO[str] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-endpoint", daemon=True)
        self._server: _Server | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    @property
    def config(self) -> EndpointConfig:
        return self._server.config if self._server is not None else self._config

    def start(self) -> FakeEndpoint:
        if self._log_path is not None:
            self._log_file = self._log_path.open("a", encoding="utf-8")
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self._server = _Server(self._config, self._log_file)
        self._runner = web.AppRunner(self._server.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, backlog=4096, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    def configure(self, **changes: Any) -> EndpointConfig:
        """Change the configuration while serving (e.g. stop injecting 429s); returns the new one."""
        new = dataclasses.replace(self.config, **changes)

        async def apply() -> None:
            assert self._server is not None
            self._server.reconfigure(new)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(timeout=10)
        return new

    @property
    def log(self) -> list[LogEntry]:
        """Every request that has ended so far, in the order they ended."""
        if self._server is None:
            return []
        with self._server.lock:
            return list(self._server.entries)

    @property
    def in_flight(self) -> int:
        return self._server.in_flight if self._server is not None else 0

    def clear_log(self) -> None:
        if self._server is not None:
            with self._server.lock:
                self._server.entries.clear()

    def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(timeout=30)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_closed() and not self._thread.is_alive():
            self._loop.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> FakeEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def concurrency_profile(entries: Sequence[LogEntry], t0: float, t1: float) -> tuple[int, float]:
    """(lowest, time-weighted mean) number of requests in the server between ``t0`` and ``t1``,
    from the log's arrival and end times."""
    if t1 <= t0:
        raise ValueError("t1 must be after t0")
    events = sorted([(e.arrival, 1) for e in entries] + [(e.end, -1) for e in entries], key=lambda x: (x[0], -x[1]))
    level = 0
    lowest: int | None = None
    area = 0.0
    last = t0
    for t, step in events:
        if t > t0:
            seg_end = min(t, t1)
            if seg_end > last:
                area += level * (seg_end - last)
                lowest = level if lowest is None else min(lowest, level)
                last = seg_end
        if t >= t1:
            break
        level += step
    if last < t1:
        area += level * (t1 - last)
        lowest = level if lowest is None else min(lowest, level)
    return (lowest or 0), area / (t1 - t0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m trustwatch.tools.fake_endpoint", description=(__doc__ or "").split("\n", 1)[0]
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0: a free port")
    ap.add_argument("--log", type=Path, default=None, help="append every request to this JSONL file")
    fields = {f.name: f for f in dataclasses.fields(EndpointConfig)}
    for name, f in fields.items():
        default = f.default
        flag = f"--{name.replace('_', '-')}"
        if isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"default {default}")
        else:
            ap.add_argument(flag, type=type(default), default=default, help=f"default {default}")
    args = ap.parse_args(argv)
    try:
        config = EndpointConfig(**{name: getattr(args, name) for name in fields})
    except ValueError as e:
        ap.error(str(e))
    ep = FakeEndpoint(config, port=args.port, host=args.host, log_path=args.log).start()
    print(f"fake endpoint serving {ep.base_url} (seed {config.seed}); Ctrl-C stops it", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            pass
    finally:
        ep.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
