"""The transport loop every consuming service runs: poll a batch, decode, hand it to pure logic,
produce the outputs, flush, then commit. Undecodable or unprocessable messages go to the dead-letter
topic with the reason; nothing is committed before its output is durable. :class:`ConsumerLoop` holds
what every loop shares (consumer re-creation, dead letters, breaker, heartbeat); the batch loop is
:class:`Worker`, the streaming one (no batch barrier) :mod:`trustwatch.platform.streaming`."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from trustwatch.platform import config
from trustwatch.platform.bus.base import Bus, Consumer, Message, Producer, Topics
from trustwatch.platform.messages import now_ms
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The quiet gap (s) that ends a batch loop's gathering before its ``linger_s``; see ``Worker.linger_s``.
LINGER_GAP_S = 0.25


def batch_linger_s() -> float:
    """How long (s) a batch loop of the services whose per-batch work is heavy (the dispatcher's
    judge call, the aggregator's transaction) keeps gathering a batch after its first message:
    TRUSTWATCH_BATCH_LINGER_S (0: off)."""
    return config.env_float("TRUSTWATCH_BATCH_LINGER_S", zero_ok=True)


#: Least time (s) between two lag exports, except the first idle turn after messages moved (see
#: ``ConsumerLoop._maybe_export_lag``); the Kafka bus asks the broker for the lag.
LAG_EVERY_S = 5.0

# gRPC status codes (by name, so this module does not import grpc) that mean "try again later".
_TRANSIENT_GRPC_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


class TransientError(Exception):
    """Raised by logic to say: a dependency is down; retry the batch later, blame no message."""


def is_transient(exc: BaseException) -> bool:
    """Whether an error (or one it was raised from) is a dependency's fault rather than a message's.

    Transient: :class:`TransientError`, ``ConnectionError``, ``TimeoutError``, SQLAlchemy's
    operational and connection errors (server gone, database locked), gRPC UNAVAILABLE,
    DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED, and Kafka errors marked retriable.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (TransientError, ConnectionError, TimeoutError)):
            return True
        module = type(e).__module__ or ""
        name = type(e).__name__
        if module.startswith("sqlalchemy") and name in (
            "OperationalError",
            "InterfaceError",
            "DisconnectionError",
            "TimeoutError",
        ):
            return True
        if getattr(e, "retriable", False) is True:  # kafka-python's KafkaError subclasses
            return True
        code = getattr(e, "code", None)
        if callable(code) and module.startswith("grpc"):
            try:
                if getattr(code(), "name", "") in _TRANSIENT_GRPC_CODES:
                    return True
            except Exception:  # noqa: BLE001 - not a real RpcError
                pass
        e = e.__cause__ or e.__context__
    return False


@dataclass
class Out:
    topic: str
    value: bytes
    key: bytes | None = None


@dataclass
class Result:
    """What the logic made of one input: messages to produce, or the reason it could not be processed."""

    outputs: list[Out] = field(default_factory=list)
    failed: str = ""


Handler = Callable[[Sequence[T]], Sequence[Result]]


@dataclass
class Backoff:
    """Exponential backoff with jitter: the n-th consecutive failure waits a random time between half
    and all of ``min(cap, base * 2**(n-1))`` seconds (so replicas that failed together do not retry
    together); :meth:`reset` after a success."""

    base: float = 1.0
    cap: float = 60.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 32))
        return ceiling * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.failures = 0


class ConsumerLoop:
    """What every transport loop shares: the consumer (re-created after a failure), the producer,
    dead letters, the lag gauge, the heartbeat, and the circuit breaker of :meth:`run_forever`
    around the subclass's :meth:`run_once`.

    :meth:`run_forever` is a circuit breaker around :meth:`run_once`: after a failed turn it stops
    consuming and retries with exponential backoff and jitter (:class:`Backoff`), logs once when the
    state changes (and again only when the error changes; each retry at DEBUG), and exports the state
    as ``trustwatch_worker_healthy``. ``heartbeat`` is the monotonic time of the last completed loop
    turn (a batch, an idle poll or a failed attempt), for the liveness endpoint.
    """

    def __init__(
        self,
        service: str,
        bus: Bus,
        topics: list[str],
        group_id: str,
        metrics: ServiceMetrics,
        topic_names: Topics,
        backoff: Backoff | None = None,
    ) -> None:
        self.service = service
        self.bus = bus
        self.topics = topics
        self.group_id = group_id
        self.metrics = metrics
        self.topic_names = topic_names
        self.backoff = backoff or Backoff()
        self.producer: Producer = bus.producer()
        self._consumer: Consumer | None = bus.consumer(topics, group_id)
        self._stop = threading.Event()
        self.healthy = True
        self._failing_since = 0.0
        self._last_error = ""
        self.heartbeat = time.monotonic()
        self._last_lag = -LAG_EVERY_S  # the first turn exports it
        self._moved_since_lag = False
        self.metrics.worker_healthy.labels(service).set(1)

    def run_once(self, timeout: float = 1.0) -> int:
        """One loop turn; returns how much it moved (0: nothing to do). Raises when the turn failed."""
        raise NotImplementedError

    @property
    def consumer(self) -> Consumer:
        """The current consumer; re-created here if an earlier re-creation failed (raises if it fails again)."""
        if self._consumer is None:
            self._consumer = self.bus.consumer(self.topics, self.group_id)
            log.info("%s: consumer of %s re-created", self.service, self.topics)
        return self._consumer

    def beat(self) -> None:
        """Record a completed loop turn (see ``heartbeat``)."""
        self.heartbeat = time.monotonic()

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.heartbeat

    def _dead_letter(self, m: Message, reason: str, kind: str) -> None:
        log.warning("%s: dead-lettering %s[%d]@%d: %s", self.service, m.topic, m.partition, m.offset, reason)
        dl = pb.DeadLetter(
            source_topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            key=m.key or b"",
            payload=m.value,
            reason=reason,
            service=self.service,
            created_unix_ms=now_ms(),
        )
        self.producer.produce(self.topic_names.dlq, dl.SerializeToString(), key=m.key)
        self.metrics.dead_letters.labels(self.service, kind).inc()

    def _maybe_export_lag(self, consumer: Consumer, moved: bool = False, idle: bool = False) -> None:
        """Export the lag gauge at most every ``LAG_EVERY_S``, and at once on an ``idle`` turn
        (drained) after messages ``moved`` (consumed or committed) since the last export. The Kafka
        bus asks the broker for it (end offsets and the group's committed ones): after every batch,
        and on every empty poll of a loop polling with a short timeout, those round trips were a
        tenth of the dispatcher's time and half of an in-process pipeline's main thread."""
        self._moved_since_lag = self._moved_since_lag or moved
        now = time.monotonic()
        if (idle and self._moved_since_lag) or now - self._last_lag >= LAG_EVERY_S:
            self._last_lag = now
            self._moved_since_lag = False
            self._export_lag(consumer)

    def _export_lag(self, consumer: Consumer) -> None:
        try:
            self.metrics.lag.labels(self.service).set(consumer.lag())
        except Exception as exc:  # noqa: BLE001 - best effort; never fails a committed batch
            log.debug("%s: lag not available: %s", self.service, exc)

    def _keepalive(self) -> None:
        if self._consumer is not None:
            self._consumer.keepalive()

    def _commit(self, consumer: Consumer, messages: list[Message]) -> bool:
        """Commit messages whose outputs are durable; False when the group refused (counted, logged).

        Any other commit error replaces the consumer and propagates (nothing lost: the messages are
        delivered again).
        """
        try:
            consumer.commit(messages)
        except Exception as exc:
            if type(exc).__name__ != "CommitFailedError":
                self._restart_consumer()
                raise
            # The group gave these partitions to another member (a rebalance, or this batch outlived
            # max.poll.interval): that member gets the messages again; the outputs are already durable.
            self.metrics.commit_failures.labels(self.service).inc()
            log.warning(
                "%s: commit of %d message(s) refused by the group (%s); they will be redelivered",
                self.service,
                len(messages),
                exc,
            )
            return False
        return True

    def _restart_consumer(self) -> None:
        """Close the consumer and create a new one (which starts at the committed offsets).

        Never leaves a closed consumer in place: if the new one cannot be created (broker down), the
        slot stays empty and :attr:`consumer` tries again on the next loop turn.
        """
        old, self._consumer = self._consumer, None
        if old is not None:
            try:
                old.close()
            except Exception as exc:  # noqa: BLE001 - a consumer of a dead broker may fail to close
                log.debug("%s: closing the old consumer failed: %s", self.service, exc)
        try:
            self._consumer = self.bus.consumer(self.topics, self.group_id)
        except Exception as exc:  # noqa: BLE001 - retried (with backoff) on the next loop turn
            log.warning(
                "%s: could not re-create the consumer (%s: %s); retrying on the next turn",
                self.service,
                type(exc).__name__,
                exc,
            )

    def _on_failure(self, exc: BaseException) -> float:
        """Open the breaker (or keep it open); log only state changes and new errors. Returns the delay."""
        delay = self.backoff.next_delay()
        kind = "transient fault" if is_transient(exc) else "error"
        error = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            self.healthy = False
            self._failing_since = time.monotonic()
            self.metrics.worker_healthy.labels(self.service).set(0)
            log.warning(
                "%s: %s; consumption paused, retrying with backoff (next in %.1f s)",
                self.service,
                kind,
                delay,
                exc_info=exc,
            )
        elif error != self._last_error:
            log.warning("%s: still failing, now with %s: %s (next try in %.1f s)", self.service, kind, error, delay)
        else:
            log.debug("%s: attempt %d failed: %s (next in %.1f s)", self.service, self.backoff.failures, error, delay)
        self._last_error = error
        return delay

    def _on_success(self) -> None:
        if not self.healthy:
            log.info(
                "%s: recovered after %d failed attempts in %.0f s; consuming again",
                self.service,
                self.backoff.failures,
                time.monotonic() - self._failing_since,
            )
            self.healthy = True
            self._last_error = ""
            self.metrics.worker_healthy.labels(self.service).set(1)
        self.backoff.reset()

    def run_forever(self, poll_timeout: float = 1.0, on_idle: Callable[[], Any] | None = None) -> None:
        """Loop until :meth:`stop` (or SIGTERM/SIGINT when installed by the caller)."""
        while not self._stop.is_set():
            try:
                n = self.run_once(poll_timeout)
                self._on_success()
                if on_idle is not None:
                    on_idle()
            except Exception as exc:  # noqa: BLE001 - every error: breaker open, logged, backed off
                self._stop.wait(self._on_failure(exc))
                self.beat()
                continue
            if n == 0 and self._stop.is_set():
                break
        self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        try:
            self.producer.close()
        finally:
            if self._consumer is not None:
                self._consumer.close()


class Worker(ConsumerLoop, Generic[T]):
    """One consuming service. ``handler`` gets decoded inputs and returns one Result per input.

    Failures fall in two classes. A transient fault (database, broker, judge or endpoint down; see
    :func:`is_transient`) fails the batch: nothing is committed, the consumer is re-created and the
    batch is delivered again, so nothing is lost. Any other error raised by the handler is taken to
    be caused by a message (poison: a value the database rejects, a record the logic cannot read):
    the batch is retried in halves until the message that fails alone is found, which goes to the
    dead-letter topic with its reason while the rest of the batch is processed.

    The circuit breaker, heartbeat and consumer re-creation are :class:`ConsumerLoop`'s.

    ``sub_batch`` (0: the whole poll) splits a polled batch into handler calls of at most that many
    messages; between them (and between the steps of a poison search) the consumer is kept alive in
    its group (:meth:`Consumer.keepalive`), so a long batch does not outlive ``max.poll.interval``.
    The services set it from TRUSTWATCH_<SERVICE>_SUB_BATCH with :func:`set_sub_batch`.

    ``sub_batch_s`` (0: off): with a ``sub_batch``, only the first handler call has ``sub_batch``
    messages; each later one (in this poll and the next ones) is sized to take about
    ``sub_batch_s`` seconds at the seconds per message the calls so far took (an exponentially
    weighted mean), at least one message and at most the rest of the poll. Fast handlers then get
    whole polls (the dispatcher with offline judges: a poll in 64-message calls took 1.5 times as
    long as in one call) and slow ones (an LLM judge) small calls, kept alive between them.

    ``linger_s`` (0: off): after a poll that returned messages but fewer than ``max_batch``, keep
    polling for more until the batch is full, no message came for ``LINGER_GAP_S``, or ``linger_s``
    has passed since the first poll. Messages that trickle in (completions finishing one by one)
    then share one batch's work: in ``make bench`` P1 over Kafka, at about 60 prompts/s, the
    dispatcher and aggregator paid it almost per message.
    """

    def __init__(
        self,
        service: str,
        bus: Bus,
        topics: list[str],
        group_id: str,
        decode: Callable[[bytes], T],
        handler: Handler[T],
        metrics: ServiceMetrics,
        topic_names: Topics,
        max_batch: int = 256,
        poison_attempts: int = 2,
        sub_batch: int = 0,
        backoff: Backoff | None = None,
        sub_batch_s: float = 0.0,
        linger_s: float = 0.0,
    ) -> None:
        super().__init__(service, bus, topics, group_id, metrics, topic_names, backoff)
        self.linger_s = max(0.0, linger_s)
        self.decode = decode
        self.handler = handler
        self.max_batch = max_batch
        self.poison_attempts = max(1, poison_attempts)
        self.sub_batch = max(0, sub_batch)
        self.sub_batch_s = max(0.0, sub_batch_s)
        self._per_message_s: float | None = None  # seconds per message of the handler calls so far
        self._clock: Callable[[], float] = time.perf_counter  # replaceable in tests

    def _gather(self, consumer: Consumer, timeout: float) -> list[Message]:
        """One poll, then (with ``linger_s``) more polls while messages keep coming; see the class."""
        messages = list(consumer.poll(timeout, self.max_batch))
        if not messages or self.linger_s <= 0:
            return messages
        deadline = time.monotonic() + self.linger_s
        while len(messages) < self.max_batch and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = consumer.poll(min(left, LINGER_GAP_S), self.max_batch - len(messages))
            if not more:
                break
            messages.extend(more)
        return messages

    def run_once(self, timeout: float = 1.0) -> int:
        """Process at most one batch; returns how many messages it took (0: nothing to do).

        Raises when the batch could not be finished (a transient fault, or a dead-letter or output
        produce that failed); then nothing of it is committed and it is delivered again.
        """
        consumer = self.consumer
        try:
            messages = self._gather(consumer, timeout)
        except Exception:
            # A consumer that cannot poll (closed, or broken by a broker outage) is replaced, so the
            # loop does not poll a dead one for ever.
            self._restart_consumer()
            raise
        if not messages:
            self._maybe_export_lag(consumer, idle=True)  # drained: the gauge shows it at once
            self.beat()
            return 0
        started = time.perf_counter()
        try:
            decoded: list[tuple[Message, T]] = []
            for m in messages:
                try:
                    decoded.append((m, self.decode(m.value)))
                except Exception as exc:  # noqa: BLE001 - any decode failure is the message's fault
                    self._dead_letter(m, f"undecodable message on {m.topic}: {type(exc).__name__}: {exc}", "decode")
            processed: list[tuple[Message, Result]] = []
            i = 0
            while i < len(decoded):
                if i:
                    consumer.keepalive()
                part = decoded[i : i + self._step(len(decoded) - i)]
                t0 = self._clock()
                processed.extend(self._process(part))
                self._observe_call(len(part), self._clock() - t0)
                i += len(part)
            for m, r in processed:
                if r.failed:
                    self._dead_letter(m, r.failed, "process")
                for o in r.outputs:
                    self.producer.produce(o.topic, o.value, o.key)
                    self.metrics.produced.labels(self.service, o.topic).inc()
            self.producer.flush()
        except Exception as exc:
            # Logged by run_forever's circuit breaker (once per state change), here only at DEBUG.
            log.debug("%s: batch of %d failed (%s); it will be delivered again", self.service, len(messages), exc)
            self._restart_consumer()
            raise
        self._commit(consumer, messages)
        for m in messages:
            self.metrics.consumed.labels(self.service, m.topic).inc()
        self.metrics.batch_seconds.labels(self.service).observe(time.perf_counter() - started)
        self._maybe_export_lag(consumer, moved=True)
        self.beat()
        return len(messages)

    def _step(self, left: int) -> int:
        """Messages for the next handler call, of ``left`` still to handle in this poll."""
        if not self.sub_batch:
            return max(1, left)
        if not self.sub_batch_s or self._per_message_s is None:
            return max(1, min(self.sub_batch, left))
        fits = int(self.sub_batch_s / self._per_message_s) if self._per_message_s > 0 else left
        return max(1, min(fits, left))

    def _observe_call(self, messages: int, seconds: float) -> None:
        per = seconds / max(1, messages)
        old = self._per_message_s
        self._per_message_s = per if old is None else 0.5 * old + 0.5 * per

    def _process(self, items: list[tuple[Message, T]]) -> list[tuple[Message, Result]]:
        """Run the handler; when it raises a non-transient error, find the poison by halves.

        A message whose handling still fails when it is alone, ``poison_attempts`` times, gets a
        failed Result (so it is dead-lettered with the reason) and the rest of the batch goes on.
        A transient fault (see :func:`is_transient`) propagates: the whole batch is retried later and
        nothing is turned into a dead letter.
        """
        if not items:
            return []
        attempts = self.poison_attempts if len(items) == 1 else 1
        for attempt in range(attempts):
            if attempt:
                self._keepalive()
            try:
                results = self.handler([d for _, d in items])
                if len(results) != len(items):
                    raise RuntimeError(f"handler returned {len(results)} results for {len(items)} inputs")
                return [(m, r) for (m, _), r in zip(items, results)]
            except Exception as exc:
                if is_transient(exc):
                    raise
                if len(items) == 1 and attempt == attempts - 1:
                    m = items[0][0]
                    log.warning(
                        "%s: %s[%d]@%d fails alone: %s: %s",
                        self.service,
                        m.topic,
                        m.partition,
                        m.offset,
                        type(exc).__name__,
                        exc,
                    )
                    return [(m, Result(failed=f"cannot be processed: {type(exc).__name__}: {exc}"))]
                if len(items) > 1:
                    log.warning(
                        "%s: batch of %d failed (%s: %s); retrying it in halves to find the poison",
                        self.service,
                        len(items),
                        type(exc).__name__,
                        exc,
                    )
        mid = len(items) // 2
        first = self._process(items[:mid])
        self._keepalive()
        return first + self._process(items[mid:])


def set_sub_batch(loops: Iterable[ConsumerLoop], size: int, setting: str = "sub_batch", seconds: float = 0.0) -> None:
    """Give every batch :class:`Worker` among ``loops`` handler calls of at most ``size`` messages (0:
    the whole poll; see :class:`Worker`), or, with ``seconds``, a first call of ``size`` and later
    ones sized to take about ``seconds`` (``Worker.sub_batch_s``). A streaming loop
    (:mod:`trustwatch.platform.streaming`) has no batch to split: its work in flight has its own bound
    and it keeps itself alive while busy, so it is left as it is. ``setting`` names where ``size``
    came from, for the error a negative one raises."""
    if size < 0:
        raise ValueError(f"{setting}={size}: set it to 0 (whole polls) or a positive number of messages")
    if seconds < 0:
        raise ValueError(f"{setting}_S={seconds}: set it to 0 (fixed sizes) or a positive number of seconds")
    for loop in loops:
        if isinstance(loop, Worker):
            loop.sub_batch = size
            loop.sub_batch_s = seconds


def install_signal_handlers(*workers: ConsumerLoop) -> None:
    def _stop(_sig: int, _frame: Any) -> None:
        for w in workers:
            w.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
