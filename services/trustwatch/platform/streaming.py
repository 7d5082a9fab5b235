"""The streaming transport loop: no batch barrier. Messages go into a stream of work one at a time
while there is room; each finished result's outputs are produced at once; offsets are committed, per
partition, up to the highest contiguous finished message. So a slow item holds back only the commit
of what follows it in its partition, never the work: the back-end always has ``bound`` items in
flight while the topic has messages.

Guarantees (the same as :class:`trustwatch.platform.runtime.Worker`'s, at least once):

* a message is committed only when it and every earlier message of its partition taken by this
  consumer have their outputs (or their dead letter) flushed;
* at most ``bound`` messages are in flight; at the bound the loop stops taking messages and keeps
  the consumer alive in its group (:meth:`Consumer.keepalive`, rate-limited);
* a transient fault (stream, produce, flush, poll; see :func:`~trustwatch.platform.runtime.is_transient`)
  or any error of the stream that names no message abandons the work in flight (the stream is
  closed and a new one opened), replaces the consumer and lets the circuit breaker back off: the
  uncommitted messages are delivered again, and no result of the abandoned stream can be produced
  or committed for them;
* a message whose submit fails (not transiently) ``poison_attempts`` times, or whose result says
  ``failed``, goes to the dead-letter topic (as does an undecodable one) and counts as finished;
* a partition the group moves to another member (it leaves :meth:`Consumer.assignment`) is no
  longer tracked: its messages in flight still produce their outputs when they finish (duplicates
  downstream deduplicates) but are never committed here; the new owner gets them again. A partition
  whose offsets go backwards (re-read from the committed offset) starts a new track likewise.
"""

from __future__ import annotations

import abc
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from trustwatch.platform.bus.base import Bus, Consumer, Message, Topics
from trustwatch.platform.runtime import Backoff, ConsumerLoop, Result, is_transient
from trustwatch.platform.telemetry.metrics import ServiceMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest wait for results while the loop could still take messages (new messages are polled
#: between waits, so they wait at most this long for a free slot).
_RESULT_WAIT_S = 0.05
#: Least time between two keep-alives while the loop is at its bound.
_KEEPALIVE_S = 1.0
#: Longest time (s) a finished item's outputs wait for the flush that makes them durable (and lets
#: its offset be committed) while other items are in flight; see ``StreamingWorker.flush_every_s``.
FLUSH_EVERY_S = 0.1


class ItemStream(abc.ABC, Generic[T]):
    """The logic side of the streaming loop: items go in one at a time, results come out as they
    finish, in any order. Tokens are the loop's: it gives each submitted item a distinct one and
    expects it back with the item's :class:`Result`. Called from the loop's thread only."""

    #: Most items in flight at once.
    capacity: int

    @abc.abstractmethod
    def submit(self, token: int, item: T) -> None:
        """Start one item without waiting for it. Raise a transient error (dependency down) to fail
        the loop turn; any other error blames this item (it is retried, then dead-lettered)."""

    @abc.abstractmethod
    def collect(self, timeout: float = 0.0) -> list[tuple[int, Result]]:
        """Every (token, result) finished since the last call; waits up to ``timeout`` s for the first."""

    @property
    @abc.abstractmethod
    def in_flight(self) -> int:
        """Items submitted whose results have not been collected."""

    def close(self) -> None:
        """Abandon the items in flight (their messages are not committed and come again)."""
        return None


@dataclass
class _Entry:
    message: Message
    done: bool = False


@dataclass
class _Track:
    """Messages of one partition taken by this consumer and not yet committed, in offset order."""

    entries: deque[_Entry] = field(default_factory=deque)
    last_offset: int = -1


class StreamingWorker(ConsumerLoop, Generic[T]):
    """A consuming service over an :class:`ItemStream` (see the module docstring).

    ``open_stream`` makes a stream; one is opened on the first turn and again after a failure.
    ``max_in_flight`` (0: the stream's capacity, which also caps it) bounds the messages taken and
    not finished. ``drain_s``: on :meth:`close`, how long to wait for the items in flight to finish
    (and be committed) before abandoning them. ``flush_every_s``: while items are in flight, the
    outputs of finished ones are flushed (and their offsets committed) at most this often, so that
    a stream whose results come back a few at a time (HTTP replies) does not pay a flush and a
    commit round trip for each few (two thirds of the generator's main thread at 900 replies/s);
    when nothing is left in flight, or on draining, they are flushed at once.
    """

    def __init__(
        self,
        service: str,
        bus: Bus,
        topics: list[str],
        group_id: str,
        decode: Callable[[bytes], T],
        open_stream: Callable[[], ItemStream[T]],
        metrics: ServiceMetrics,
        topic_names: Topics,
        max_in_flight: int = 0,
        poison_attempts: int = 2,
        backoff: Backoff | None = None,
        drain_s: float = 10.0,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> None:
        super().__init__(service, bus, topics, group_id, metrics, topic_names, backoff)
        self.flush_every_s = max(0.0, flush_every_s)
        self.decode = decode
        self.open_stream = open_stream
        self.max_in_flight = max(0, max_in_flight)
        self.poison_attempts = max(1, poison_attempts)
        self.drain_s = drain_s
        self._stream: ItemStream[T] | None = None
        self._pending: dict[int, _Entry] = {}  # token -> entry, for items in the current stream
        self._tracks: dict[tuple[str, int], _Track] = {}
        self._next_token = 0
        self._last_keepalive = time.monotonic()
        self._unflushed: list[_Entry] = []  # finished, outputs produced, not flushed yet
        self._last_flush = time.monotonic()

    # -- state -------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Messages submitted whose results have not come back."""
        return len(self._pending)

    @property
    def busy(self) -> bool:
        """Whether work is in flight or not flushed yet (a caller driving :meth:`run_once` must not
        stop yet)."""
        return bool(self._pending or self._unflushed)

    def bound(self, stream: ItemStream[T]) -> int:
        cap = max(1, int(stream.capacity))
        return min(self.max_in_flight, cap) if self.max_in_flight else cap

    def _open(self) -> ItemStream[T]:
        if self._stream is None:
            self._stream = self.open_stream()
        return self._stream

    def _abandon(self) -> None:
        """Drop the work in flight and everything tracked (nothing of it will be committed)."""
        stream, self._stream = self._stream, None
        if self._pending:
            log.info("%s: abandoning %d item(s) in flight; they will be delivered again", self.service, self.in_flight)
        self._pending.clear()
        self._tracks.clear()
        self._unflushed.clear()
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:  # noqa: BLE001 - a broken stream may fail to close
                log.debug("%s: closing the stream failed: %s", self.service, exc)

    def _fail(self) -> None:
        self._abandon()
        self._restart_consumer()

    # -- one turn ------------------------------------------------------------------------------------
    def run_once(self, timeout: float = 1.0) -> int:
        """Take what there is room for, collect what finished, produce, flush, commit.

        Returns how many messages were taken plus how many finished (0: nothing moved). Raises when
        the turn failed; then the work in flight is abandoned and delivered again.
        """
        return self._turn(timeout, take=True)

    def _turn(self, timeout: float, take: bool) -> int:
        consumer = self.consumer
        finished: list[_Entry] = []
        try:
            stream = self._open()
            room = self.bound(stream) - self.in_flight if take else 0
            messages: list[Message] = []
            if room > 0:
                messages = consumer.poll(0.0 if self._pending else timeout, room)
                self._last_keepalive = time.monotonic()
            elif time.monotonic() - self._last_keepalive >= _KEEPALIVE_S:
                consumer.keepalive()
                self._last_keepalive = time.monotonic()
            self._forget_moved(consumer)
            for m in messages:
                entry = self._track(m)
                finished.extend(self._start(stream, m, entry))
            if self._pending:
                wait = 0.0 if messages else (timeout if room <= 0 else min(timeout, _RESULT_WAIT_S))
                finished.extend(self._finish(stream.collect(wait)))
            self._unflushed.extend(finished)
            flushed: list[_Entry] = []
            if self._unflushed and (
                not take or not self._pending or time.monotonic() - self._last_flush >= self.flush_every_s
            ):
                self.producer.flush()
                self._last_flush = time.monotonic()
                flushed, self._unflushed = self._unflushed, []
        except Exception as exc:
            log.debug("%s: streaming turn failed (%s); work in flight will be delivered again", self.service, exc)
            self._fail()
            raise
        for e in flushed:
            e.done = True  # flushed: its outputs are durable
        to_commit, count = self._committable()
        if to_commit:
            try:
                self._commit(consumer, to_commit)
            except Exception:
                self._abandon()  # the consumer was replaced: nothing tracked is valid any more
                raise
            for topic, n in count.items():
                self.metrics.consumed.labels(self.service, topic).inc(n)
        if to_commit or (not messages and not self._pending):
            self._maybe_export_lag(consumer, moved=bool(to_commit), idle=not self._pending)
        self.beat()
        return len(messages) + len(finished)

    def _track(self, m: Message) -> _Entry:
        key = (m.topic, m.partition)
        track = self._tracks.get(key)
        if track is None or m.offset <= track.last_offset:
            if track is not None:
                log.warning(
                    "%s: %s[%d] read again from offset %d (was at %d); earlier messages in flight will not be "
                    "committed here",
                    self.service,
                    m.topic,
                    m.partition,
                    m.offset,
                    track.last_offset,
                )
            track = self._tracks[key] = _Track()
        entry = _Entry(m)
        track.entries.append(entry)
        track.last_offset = m.offset
        return entry

    def _forget_moved(self, consumer: Consumer) -> None:
        held = consumer.assignment()
        if held is None:
            return
        for key in [k for k in self._tracks if k not in held]:
            track = self._tracks.pop(key)
            waiting = sum(1 for e in track.entries if not e.done)
            log.info(
                "%s: %s[%d] moved to another member; %d message(s) in flight there will not be committed here",
                self.service,
                key[0],
                key[1],
                waiting,
            )

    def _start(self, stream: ItemStream[T], m: Message, entry: _Entry) -> list[_Entry]:
        """Decode and submit one message; returns it when it is already finished (dead-lettered)."""
        try:
            item = self.decode(m.value)
        except Exception as exc:  # noqa: BLE001 - any decode failure is the message's fault
            self._dead_letter(m, f"undecodable message on {m.topic}: {type(exc).__name__}: {exc}", "decode")
            return [entry]
        for attempt in range(self.poison_attempts):
            token = self._next_token
            self._next_token += 1
            try:
                stream.submit(token, item)
            except Exception as exc:
                if is_transient(exc):
                    raise
                if attempt < self.poison_attempts - 1:
                    continue
                log.warning(
                    "%s: %s[%d]@%d cannot be submitted: %s: %s",
                    self.service,
                    m.topic,
                    m.partition,
                    m.offset,
                    type(exc).__name__,
                    exc,
                )
                self._dead_letter(m, f"cannot be processed: {type(exc).__name__}: {exc}", "process")
                return [entry]
            self._pending[token] = entry
            return []
        return []  # not reached: the loop returns or raises

    def _finish(self, results: list[tuple[int, Result]]) -> list[_Entry]:
        """Produce the outputs of finished items; returns their entries (done once flushed)."""
        out: list[_Entry] = []
        for token, r in results:
            entry = self._pending.pop(token, None)
            if entry is None:
                log.warning("%s: a result for unknown token %d ignored", self.service, token)
                continue
            if r.failed:
                self._dead_letter(entry.message, r.failed, "process")
            for o in r.outputs:
                self.producer.produce(o.topic, o.value, o.key)
                self.metrics.produced.labels(self.service, o.topic).inc()
            out.append(entry)
        return out

    def _committable(self) -> tuple[list[Message], dict[str, int]]:
        """Per partition, the last message of the finished prefix (popped); and how many per topic."""
        last: list[Message] = []
        count: dict[str, int] = {}
        for track in self._tracks.values():
            top: Message | None = None
            while track.entries and track.entries[0].done:
                top = track.entries.popleft().message
                count[top.topic] = count.get(top.topic, 0) + 1
            if top is not None:
                last.append(top)
        return last, count

    # -- stopping ------------------------------------------------------------------------------------
    def drain(self, timeout: float) -> None:
        """Take nothing new; finish, produce and commit the work in flight for up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (self._pending or self._unflushed) and self._stream is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._turn(min(left, 1.0), take=False)

    def close(self) -> None:
        try:
            if (self._pending or self._unflushed) and self._consumer is not None:
                self.drain(self.drain_s)
        except Exception as exc:  # noqa: BLE001 - what is not committed is delivered again
            log.warning("%s: draining the work in flight failed: %s", self.service, exc)
        finally:
            self._abandon()
            super().close()
