"""The ``openai`` back-end: any OpenAI-compatible chat-completions endpoint.

OpenAI, Azure-style gateways, a vLLM server, an in-house proxy: anything that answers
``POST {base_url}/chat/completions``. Each prompt is sent as the single user message.

The requests go out through one ``aiohttp`` session per back-end, not the ``openai`` SDK: the SDK
spent about 2 ms of CPU per request (request building, pydantic models), which capped one
generator near 500 requests/s against an instant endpoint; aiohttp spends about 0.15 ms.

Retries live in ONE layer, this one (no client library retries behind it, which would multiply
with ours and hide attempts from our accounting). A request is
retried, with exponential backoff plus jitter, on HTTP 429, 408, any 5xx, timeouts, connection
errors and an HTTP 200 whose body is not JSON or is cut short (a proxy's HTML page, a dropped
connection); a ``Retry-After`` (or ``retry-after-ms``) header, when given, sets the wait instead. Any
other 4xx (400 prompt too long, 401 bad key, 404 unknown model, ...) is final at once. A request
that finally fails becomes an error result; ``generate`` never raises for one request. Its
``error_kind`` (see ``_kinds``) says whose failure it is: ``ERROR_KIND_FINAL`` for one that belongs
to the model and the prompt (any 4xx other than 408/429, e.g. the content filter or a prompt longer
than the window; a reply with no choices), ``ERROR_KIND_TRANSIENT`` for the endpoint's (retries
spent on a retryable fault, or an unexpected exception), which a re-run of the run retries.

At most ``concurrency`` requests are on the wire at any moment (a place in the window is held
while a request is paced and on the wire, not while it waits to retry). Rate limits (see ``_ratelimit``) apply to every
attempt: a refused request waits out its own ``Retry-After``; the window of requests on the wire
shrinks when HTTP 429s are a large share of a round's replies (AIMD: halved at most once per
round, then +1 per window of successes, never above ``concurrency``), not on a 429 here and there;
optional ``rpm`` / ``tpm`` ceilings (the target's ``?rpm=...&tpm=...``) pace attempts so one run
leaves a shared quota to others; and when a reply's ``x-ratelimit-remaining-requests`` or
``-tokens`` reaches 0, new attempts are held until the matching ``x-ratelimit-reset-*``, or until
an attempt sent after that reply succeeds.

Two ways in: ``generate`` (a batch, one result per request, in order) and ``stream`` (a
:class:`~trustwatch.generator.backends.base.Stream`: requests go in one at a time and results come
out as each finishes). Both run the same per-request coroutine on the same loop and limits.

``generate`` is synchronous: each back-end owns one event loop running in a daemon thread, so it
can be called repeatedly, from several threads, and even from code that is itself inside a running
event loop. The API key is read once from the environment variable the target names; it is never
logged, and it is scrubbed from any error text that might echo it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from trustwatch.generator.backends import _kinds
from trustwatch.generator.backends._ratelimit import AimdWindow, QuotaHold, TokenBucket, estimate_tokens
from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, Stream, register
from trustwatch.platform import config
from trustwatch.platform.extras import BASE_INSTALL, require
from trustwatch.platform.targets import TargetSpec, redact_url

log = logging.getLogger(__name__)

#: The key sent to endpoints that need none (vLLM without --api-key, local gateways).
PLACEHOLDER_KEY = "EMPTY"
#: "Bearer <credential>" as an endpoint may echo it in an error body.
_BEARER = re.compile(r"(\b[Bb]earer\s+)[^\s\"',;}]+")
#: The longest Retry-After we honour as given; a larger value (or a hostile header) is cut to this.
MAX_RETRY_AFTER_S = 120.0
#: How much of an error body that is not JSON goes into the error text.
_ERROR_BODY_CHARS = 500


class _Final(Exception):
    """A failure not worth retrying; its message is the result's error."""


class _Retryable(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested wait, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        raw = headers.get("retry-after")
    except Exception:  # noqa: BLE001 - odd header containers: treat as no header
        return None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _count(value: Any) -> int:
    """A token count from a reply's usage (0 when absent or not a number)."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _server_message(body: Any) -> str:
    """The server's own error text from an error body ({"message": ...} or {"error": {...}})."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return ""


def env_proxy(url: str) -> tuple[str | None, Any]:
    """The proxy for ``url`` from HTTP_PROXY / HTTPS_PROXY / NO_PROXY (as other HTTP clients honour
    them), with its credentials from the proxy URL or ~/.netrc: (None, None) for none. Looked up once
    per back-end, by aiohttp's own rule."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:  # no proxy for this scheme, or NO_PROXY names the host
        return None, None
    return str(proxy), auth


@register
class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible endpoint, with bounded concurrency and retries."""

    name = "openai"

    @classmethod
    def from_target(cls, target: TargetSpec, **options: Any) -> OpenAIBackend:
        """Takes ``concurrency`` (requests in flight; default 16); the target's ``rpm`` / ``tpm``
        become the rate-limit ceilings; the reply timeout is TRUSTWATCH_OPENAI_TIMEOUT_S."""
        extra: dict[str, Any] = {"concurrency": int(options["concurrency"])} if options.get("concurrency") else {}
        return cls(
            target.model,
            target.base_url,
            target.api_key_env,
            rpm=target.rpm,
            tpm=target.tpm,
            timeout_s=config.env_float("TRUSTWATCH_OPENAI_TIMEOUT_S"),
            **extra,
        )

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str = "",
        concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        rpm: float = 0,
        tpm: float = 0,
        adaptive: bool = True,
    ) -> None:
        """``rpm`` / ``tpm``: ceilings on requests (attempts) and tokens per minute (0: none);
        ``adaptive``: shrink the window of requests on the wire when HTTP 429s are a large share
        of the replies (AIMD)."""
        if not base_url:
            raise ValueError("the openai back-end needs a base_url, e.g. http://host:8000/v1")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if rpm < 0 or tpm < 0:
            raise ValueError(f"rpm and tpm must be >= 0 (0: no ceiling), got rpm={rpm} tpm={tpm}")
        # says what to install; imported here: only the generator needs it
        self._aiohttp = require("aiohttp", "the openai generation back-end (openai:... targets)", BASE_INSTALL)
        self.model = model
        self.base_url = base_url.rstrip("/")
        #: The URL as errors and logs show it: without user info, query or fragment.
        self._shown_url = redact_url(self.base_url)
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # Enough requests per hand-over that every slot stays busy while stragglers finish.
        self.preferred_batch = max(64, 4 * concurrency)

        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not key:
            log.warning("environment variable %s is empty or unset; sending the placeholder key", api_key_env)
        self._key = key or PLACEHOLDER_KEY

        #: Counters for tests and metrics: attempts made, retries, peak requests on the wire.
        self.attempts = 0
        self.retries = 0
        self.peak_in_flight = 0
        self._in_flight = 0
        #: Rate limiting: HTTP 429s seen, seconds attempts waited on the rpm/tpm ceilings and on
        #: the server's x-ratelimit headers.
        self.rate_limited = 0
        self.paced_s = 0.0
        self.held_s = 0.0
        self.rpm = float(rpm)
        self.tpm = float(tpm)
        self.adaptive = adaptive

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
        self._thread.start()
        self._closed = False
        # The client and the limits belong to the loop, so they are created on it.
        self._client: Any = None
        self._proxy: str | None = None  # see env_proxy
        self._proxy_auth: Any = None
        self._window: AimdWindow | None = None
        #: The server's x-ratelimit holds (a spent quota holds new attempts until its reset).
        self.quota = QuotaHold()
        self._rpm: TokenBucket | None = None
        self._tpm: TokenBucket | None = None
        self._submit(self._setup()).result()

    # ------------------------------------------------------------------------------------------

    def _submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _setup(self) -> None:
        aiohttp = self._aiohttp
        self._client = aiohttp.ClientSession(
            # the window bounds the requests on the wire; the pool only keeps their connections
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"Authorization": f"Bearer {self._key}", "Accept": "application/json"},
            # No trust_env: it looks the proxy and ~/.netrc up again for every request, each time in
            # a worker thread (a fifth of the generator's samples against an instant endpoint).
        )
        self._url = f"{self.base_url}/chat/completions"
        self._proxy, self._proxy_auth = env_proxy(self._url)
        self._window = AimdWindow(self.concurrency, adaptive=self.adaptive)
        self._rpm = TokenBucket(self.rpm) if self.rpm else None
        self._tpm = TokenBucket(self.tpm) if self.tpm else None

    @property
    def window(self) -> AimdWindow:
        """The window of requests on the wire (its ``window`` is the current size; ``low`` the
        smallest so far; ``decreases`` / ``increases`` count the AIMD steps)."""
        assert self._window is not None
        return self._window

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        if self._closed:
            raise RuntimeError("this OpenAIBackend is closed")
        if not requests:
            return []
        return list(self._submit(self._generate(list(requests))).result())

    async def _generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    def stream(self) -> OpenAIStream:
        """This back-end in streaming mode; ``capacity`` is ``concurrency``. See :class:`OpenAIStream`."""
        if self._closed:
            raise RuntimeError("this OpenAIBackend is closed")
        return OpenAIStream(self)

    # ------------------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        """Error text safe to store and log: never contains the API key (nor any bearer credential
        an endpoint echoes back), nor the base URL's user info."""
        if self._key != PLACEHOLDER_KEY and self._key in text:
            text = text.replace(self._key, "***")
        if self.base_url != self._shown_url and self.base_url in text:
            text = text.replace(self.base_url, self._shown_url)
        return _BEARER.sub(r"\1***", text)

    def backoff(self, retry: int) -> float:
        """Wait before retry number ``retry`` (0-based): exponential, capped, with jitter.

        Half of the exponential step is fixed and half random ("equal jitter"): the wait grows
        reliably, and clients that failed together do not come back together.
        """
        step = min(self.backoff_max_s, self.backoff_base_s * (2**retry))
        return float(step / 2 + random.uniform(0, step / 2))

    async def _one(self, req: GenRequest) -> GenResult:
        t0 = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._attempt(req, t0)
            except _Final as e:
                return _kinds.failed(
                    req.request_id, self._clean(str(e)), _kinds.FINAL, latency_s=time.perf_counter() - t0
                )
            except _Retryable as e:
                if attempts > self.max_retries:
                    tried = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                    return _kinds.failed(
                        req.request_id,
                        self._clean(f"gave up after {tried}: {e}"),
                        _kinds.TRANSIENT,
                        latency_s=time.perf_counter() - t0,
                    )
                wait = self.backoff(attempts - 1)
                if e.retry_after is not None:
                    wait = min(e.retry_after, MAX_RETRY_AFTER_S)
                self.retries += 1
                log.debug("request %s: %s; retry %d in %.2f s", req.request_id, self._clean(str(e)), attempts, wait)
                await asyncio.sleep(wait)
            except Exception as e:  # noqa: BLE001 - a bug or an odd reply must not sink the batch
                return _kinds.failed(
                    req.request_id,
                    self._clean(f"unexpected {type(e).__name__} from {self._shown_url}: {e}"),
                    _kinds.TRANSIENT,
                    latency_s=time.perf_counter() - t0,
                )

    async def _attempt(self, req: GenRequest, t0: float) -> GenResult:
        """One HTTP exchange. Returns a result, or raises _Retryable / _Final."""
        aiohttp = self._aiohttp
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": req.prompt}],
            "temperature": req.temperature,
            "top_p": req.top_p,
            "max_tokens": req.max_tokens,
        }
        if req.seed is not None:
            body["seed"] = req.seed
        assert self._window is not None and self._client is not None
        window = self._window
        granted = await window.acquire()
        try:
            await self._pace(req)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            self.attempts += 1
            seq = self.quota.sent()
            try:
                async with self._client.post(
                    self._url, json=body, proxy=self._proxy, proxy_auth=self._proxy_auth
                ) as resp:
                    status, headers = resp.status, resp.headers
                    raw = await resp.read()
            except TimeoutError as e:
                raise _Retryable(f"no reply from {self._shown_url} within {self.timeout_s:g} s") from e
            except aiohttp.ClientError as e:  # refused, reset, a body cut short, an invalid reply
                raise _Retryable(
                    f"cannot reach {self._shown_url} ({type(e).__name__}: {e}); check that the "
                    "server is running and that the target's base_url (scheme, host, port, /v1 "
                    "path) is right"
                ) from e
            finally:
                self._in_flight -= 1
            if status != 200:
                self._observe(seq, headers, ok=False)
                if status == 429:
                    self.rate_limited += 1
                    window.overloaded(granted)
                raise self._status_error(status, raw, headers)
            self._observe(seq, headers, ok=True)
            window.succeeded(granted)
        finally:
            window.release()
        try:
            data = json.loads(raw)
        except ValueError as e:  # a proxy's HTML page, a truncated or empty body, bytes that are not UTF-8
            raise _Retryable(
                f"HTTP 200 from {self._shown_url} with a body that is not JSON ({type(e).__name__}: {e})"
            ) from e
        if not isinstance(data, dict):
            raise _Retryable(f"HTTP 200 from {self._shown_url} with a JSON body that is not an object")
        choices = data.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise _Final(f"{self._shown_url} answered with no choices")
        choice = choices[0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        usage = data.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        return GenResult(
            request_id=req.request_id,
            text=content if isinstance(content, str) else "",
            finish_reason=str(choice.get("finish_reason") or ""),
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            latency_s=time.perf_counter() - t0,
        )

    async def _pace(self, req: GenRequest) -> None:
        """Wait, before an attempt goes on the wire, for the server's x-ratelimit hold to pass and
        for the rpm / tpm ceilings to allow it."""
        self.held_s += await self.quota.wait()
        if self._rpm is not None:
            self.paced_s += await self._rpm.acquire(1)
        if self._tpm is not None:
            self.paced_s += await self._tpm.acquire(estimate_tokens(req.prompt, req.max_tokens))

    def _observe(self, seq: int, headers: Any, ok: bool) -> None:
        """Note the reply to attempt ``seq``: a spent quota (x-ratelimit headers) holds new attempts
        until its reset, and a success sent after the reply that imposed it lifts it."""
        hold = self.quota.observe(seq, headers, ok)
        if hold:
            log.debug("%s says its rate limit is spent; holding new requests up to %.2f s", self._shown_url, hold)

    def _status_error(self, status: int, raw: bytes, headers: Any) -> Exception:
        try:
            detail = _server_message(json.loads(raw))
        except ValueError:
            detail = ""
        detail = detail or raw[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip() or "(no body)"
        msg = f"HTTP {status} from {self._shown_url}: {detail}"
        if status == 429 or status == 408 or status >= 500:
            return _Retryable(msg, parse_retry_after(headers))
        if status in (401, 403):
            where = (
                f"the environment variable {self.api_key_env}"
                if self.api_key_env
                else "the target's api_key_env (none is set)"
            )
            msg += f"; check that {where} holds a valid API key"
        elif status == 404:
            msg += f"; check the model name ({self.model!r}) and the base_url path"
        return _Final(msg)

    # ------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def _shutdown() -> None:
            if self._client is not None:
                await self._client.close()

        # Closing is best effort: a client that cannot close cleanly must not block shutdown.
        with contextlib.suppress(Exception):
            self._submit(_shutdown()).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __del__(self) -> None:
        # A forgotten close() must not leave a thread and sockets behind.
        with contextlib.suppress(Exception):
            self.close()


class OpenAIStream(Stream):
    """The ``openai`` back-end in streaming mode (see :class:`~trustwatch.generator.backends.base.Stream`).

    :meth:`submit` schedules the request's coroutine on the back-end's event loop (thread-safe) and
    returns at once; each finished result is put on a thread-safe queue that :meth:`results`
    drains, so results come out in finishing order. A request that fails becomes an error result
    with its ``error_kind``, exactly as in ``generate``.

    ``capacity`` is the back-end's ``concurrency``, and a caller that keeps ``capacity`` requests
    submitted keeps that many on the wire. Every submitted request counts in :attr:`in_flight`
    until :meth:`results` returns it, but not every one is on the wire: one waiting out a backoff
    before a retry holds no place in the window (so a retry never blocks a fresh request), and
    after many HTTP 429s the window is the back-end's AIMD window (``backend.window.window``, at most
    ``capacity``); the others wait inside the back-end. (One waiting on an rpm / tpm ceiling or a
    server's x-ratelimit hold keeps its place in the window while it waits: nothing may go out
    then anyway, and paced requests leave in order.) The caller needs no rate-limit logic of its
    own: it keeps ``capacity`` submitted, and the back-end sends what the limits allow.
    """

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend
        self.capacity = backend.concurrency
        self._done: queue.SimpleQueue[GenResult] = queue.SimpleQueue()
        self._in_flight = 0
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # touched on the back-end's loop only

    def submit(self, request: GenRequest) -> None:
        if self._closed or self.backend._closed:
            raise RuntimeError("this stream (or its OpenAIBackend) is closed")
        if self._in_flight >= self.capacity:
            raise RuntimeError(f"stream capacity {self.capacity} exceeded: collect results() before submitting more")
        self._in_flight += 1
        self.backend._loop.call_soon_threadsafe(self._start, request)

    def _start(self, request: GenRequest) -> None:
        if self._closed:
            return
        task = self.backend._loop.create_task(self._run(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: GenRequest) -> None:
        try:
            result = await self.backend._one(request)
        except Exception as e:  # noqa: BLE001 - _one catches all; this only guards against a bug there
            result = _kinds.failed(
                request.request_id, self.backend._clean(f"unexpected {type(e).__name__}: {e}"), _kinds.TRANSIENT
            )
        if not self._closed:
            self._done.put(result)

    def results(self, timeout: float = 0.0) -> list[GenResult]:
        out: list[GenResult] = []
        try:
            out.append(self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        self._in_flight -= len(out)
        return out

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def cancel() -> None:
            for task in list(self._tasks):
                task.cancel()

        # The back-end's loop may already be stopped (the back-end closed first): nothing to cancel then.
        with contextlib.suppress(RuntimeError):
            self.backend._loop.call_soon_threadsafe(cancel)
