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

from trustwatch.bus.base import Bus, Consumer, Message, Producer, Topics
from trustwatch.messages import now_ms
from trustwatch.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")


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

    If the handler raises, the batch is not committed: the consumer is re-created so the batch is
    delivered again (a transient fault such as a database restart loses nothing).
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
        self.producer: Producer = bus.producer()
        self.consumer: Consumer = bus.consumer(topics, group_id)
        self._stop = threading.Event()

    def _dead_letter(self, m: Message, reason: str, kind: str) -> None:
        log.warning("%s: dead-lettering %s[%d]@%d: %s", self.service, m.topic, m.partition, m.offset, reason)
        dl = pb.DeadLetter(source_topic=m.topic, partition=m.partition, offset=m.offset, key=m.key or b"",
                           payload=m.value, reason=reason, service=self.service, created_unix_ms=now_ms())
        self.producer.produce(self.topic_names.dlq, dl.SerializeToString(), key=m.key)
        self.metrics.dead_letters.labels(self.service, kind).inc()

    def run_once(self, timeout: float = 1.0) -> int:
        """Process at most one batch; returns how many messages it took (0: nothing to do)."""
        messages = self.consumer.poll(timeout, self.max_batch)
        if not messages:
            self.metrics.lag.labels(self.service).set(self.consumer.lag())
            return 0
        started = time.perf_counter()
        decoded: list[tuple[Message, T]] = []
        for m in messages:
            try:
                decoded.append((m, self.decode(m.value)))
            except Exception as exc:  # noqa: BLE001 - any decode failure is the message's fault
                self._dead_letter(m, f"undecodable message on {m.topic}: {type(exc).__name__}: {exc}", "decode")
        try:
            results = self.handler([d for _, d in decoded]) if decoded else []
            if len(results) != len(decoded):
                raise RuntimeError(f"handler returned {len(results)} results for {len(decoded)} inputs")
            for (m, _), r in zip(decoded, results):
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

    def _restart_consumer(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.consumer = self.bus.consumer(self.topics, self.group_id)

    def run_forever(self, poll_timeout: float = 1.0, on_idle: Callable[[], Any] | None = None,
                    retry_delay: float = 2.0) -> None:
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
