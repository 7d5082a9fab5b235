"""The transport loop every consuming service runs: poll a batch, decode, hand it to pure logic,
produce the outputs, flush, then commit. Undecodable or unprocessable messages go to the dead-letter
topic with the reason; nothing is committed before its output is durable."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from trustwatch.platform.bus.base import Bus, Consumer, Message, Producer, Topics
from trustwatch.platform.messages import now_ms
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class Worker(Generic[T]):
    """One consuming service. ``handler`` gets decoded inputs and returns one Result per input.

    Failures fall in two classes. A transient fault (database, broker, judge or endpoint down; see
    :func:`is_transient`) fails the batch: nothing is committed, the consumer is re-created and the
    batch is delivered again, so nothing is lost. Any other error raised by the handler is taken to
    be caused by a message (poison: a value the database rejects, a record the logic cannot read):
    the batch is retried in halves until the message that fails alone is found, which goes to the
    dead-letter topic with its reason while the rest of the batch is processed.
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
    ) -> None:
        self.service = service
        self.bus = bus
        self.topics = topics
        self.group_id = group_id
        self.decode = decode
        self.handler = handler
        self.metrics = metrics
        self.topic_names = topic_names
        self.max_batch = max_batch
        self.poison_attempts = max(1, poison_attempts)
        self.producer: Producer = bus.producer()
        self.consumer: Consumer = bus.consumer(topics, group_id)
        self._stop = threading.Event()

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

    def run_once(self, timeout: float = 1.0) -> int:
        """Process at most one batch; returns how many messages it took (0: nothing to do).

        Raises when the batch could not be finished (a transient fault, or a dead-letter or output
        produce that failed); then nothing of it is committed and it is delivered again.
        """
        messages = self.consumer.poll(timeout, self.max_batch)
        if not messages:
            self.metrics.lag.labels(self.service).set(self.consumer.lag())
            return 0
        started = time.perf_counter()
        try:
            decoded: list[tuple[Message, T]] = []
            for m in messages:
                try:
                    decoded.append((m, self.decode(m.value)))
                except Exception as exc:  # noqa: BLE001 - any decode failure is the message's fault
                    self._dead_letter(m, f"undecodable message on {m.topic}: {type(exc).__name__}: {exc}", "decode")
            for m, r in self._process(decoded):
                if r.failed:
                    self._dead_letter(m, r.failed, "process")
                for o in r.outputs:
                    self.producer.produce(o.topic, o.value, o.key)
                    self.metrics.produced.labels(self.service, o.topic).inc()
            self.producer.flush()
        except Exception:
            log.exception("%s: batch of %d failed; it will be delivered again", self.service, len(messages))
            self._restart_consumer()
            raise
        self.consumer.commit(messages)
        for m in messages:
            self.metrics.consumed.labels(self.service, m.topic).inc()
        self.metrics.batch_seconds.labels(self.service).observe(time.perf_counter() - started)
        return len(messages)

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
        return self._process(items[:mid]) + self._process(items[mid:])

    def _restart_consumer(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.consumer = self.bus.consumer(self.topics, self.group_id)

    def run_forever(
        self, poll_timeout: float = 1.0, on_idle: Callable[[], Any] | None = None, retry_delay: float = 2.0
    ) -> None:
        """Loop until :meth:`stop` (or SIGTERM/SIGINT when installed by the caller)."""
        while not self._stop.is_set():
            try:
                n = self.run_once(poll_timeout)
            except Exception:  # noqa: BLE001 - logged in run_once; back off, then retry the batch
                self._stop.wait(retry_delay)
                continue
            if on_idle is not None:
                on_idle()
            if n == 0 and self._stop.is_set():
                break
        self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        try:
            self.producer.close()
        finally:
            self.consumer.close()


def install_signal_handlers(*workers: Worker[Any]) -> None:
    def _stop(_sig: int, _frame: Any) -> None:
        for w in workers:
            w.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
