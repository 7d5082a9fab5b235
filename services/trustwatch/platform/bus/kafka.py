"""The bus on Apache Kafka (kafka-python >= 3), with the semantics of :mod:`trustwatch.platform.bus.memory`.

Delivery is at least once: the producer waits for every in-sync replica (``acks=all``) and
:meth:`flush` raises if any message was not acknowledged; consumers never auto-commit, so a message
is redelivered to the group until :meth:`Consumer.commit` has recorded it.

Two choices keep the Kafka bus behaving like the in-memory one:

* Producing to or consuming from a topic creates it (with the bus's partition count), as the
  memory bus does; a broker's own auto-creation would use its default count, and a consumer that
  subscribes to a missing topic would only notice it after a metadata refresh (minutes).
* A new consumer's first polls wait for the group join (up to ``join_timeout`` seconds), however
  short their ``timeout``: joining takes a moment on Kafka and none on the memory bus, and a
  caller's "poll(1 s) returned nothing" must mean "nothing there", not "not joined yet".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError, UnknownError
from kafka.errors import for_code as error_for_code
from kafka.structs import OffsetAndMetadata, TopicPartition

from trustwatch.platform import config
from trustwatch.platform.bus.base import Bus, Consumer, Message, Producer

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def security_options(env: Callable[[str], str] = config.env) -> dict[str, Any]:
    """Kafka client security settings from the TRUSTWATCH_KAFKA_* variables (security protocol, SASL
    mechanism/user/password, TLS files), as kafka-python configs; ``{}`` for PLAINTEXT. The password
    comes from the environment only, never from a flag, and is never logged."""
    protocol = env("TRUSTWATCH_KAFKA_SECURITY_PROTOCOL").strip().upper() or "PLAINTEXT"
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(
            f"TRUSTWATCH_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        user, password = env("TRUSTWATCH_KAFKA_SASL_USERNAME"), env("TRUSTWATCH_KAFKA_SASL_PASSWORD")
        if not user or not password:
            raise ValueError(f"{protocol} needs TRUSTWATCH_KAFKA_SASL_USERNAME and TRUSTWATCH_KAFKA_SASL_PASSWORD")
        options.update(
            sasl_mechanism=env("TRUSTWATCH_KAFKA_SASL_MECHANISM").strip().upper() or "PLAIN",
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    if protocol.endswith("SSL"):
        for var, key in (
            ("TRUSTWATCH_KAFKA_SSL_CAFILE", "ssl_cafile"),
            ("TRUSTWATCH_KAFKA_SSL_CERTFILE", "ssl_certfile"),
            ("TRUSTWATCH_KAFKA_SSL_KEYFILE", "ssl_keyfile"),
        ):
            if env(var):
                options[key] = env(var)
        options["ssl_check_hostname"] = True
    return options


def _only_known(cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options a kafka-python client class accepts (each raises on configs it does not know)."""
    return {k: v for k, v in options.items() if k in cls.DEFAULT_CONFIG}


class KafkaBus(Bus):
    """``bootstrap``: "host:port[,host:port]". ``partitions``: for topics this bus creates.

    Extra keyword arguments are kafka-python client configs (``security_protocol``,
    ``sasl_mechanism``, ``max_poll_interval_ms``, ...); each client gets those it knows. The security
    settings default to :func:`security_options` (the TRUSTWATCH_KAFKA_* variables); keyword
    arguments override them. Producer, consumers and the admin client all get them.
    """

    def __init__(
        self,
        bootstrap: str,
        client_id: str = "trustwatch",
        partitions: int = 1,
        join_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        classes = (KafkaProducer, KafkaConsumer, KafkaAdminClient)
        unknown = [k for k in kwargs if not any(k in c.DEFAULT_CONFIG for c in classes)]
        if unknown:
            raise TypeError(f"unknown Kafka client options: {', '.join(sorted(unknown))}")
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.join_timeout = join_timeout
        try:
            security = security_options()
        except ValueError as e:
            raise SystemExit(str(e)) from None
        self._options: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": client_id, **security, **kwargs}
        self._admin: KafkaAdminClient | None = None
        self._admin_lock = threading.Lock()
        self._known_topics: set[str] = set()

    def _client_options(self, cls: Any) -> dict[str, Any]:
        return _only_known(cls, self._options)

    # -- admin -------------------------------------------------------------------------------
    def create_topics(self, topics: list[str], partitions: int = 1) -> None:
        with self._admin_lock:  # producers in several threads may create topics at once
            self._create_topics(topics, partitions)

    def _create_topics(self, topics: list[str], partitions: int) -> None:
        missing = [t for t in dict.fromkeys(topics) if t not in self._known_topics]
        if not missing:
            return
        if self._admin is None:
            self._admin = KafkaAdminClient(**self._client_options(KafkaAdminClient))
        # replication_factor -1: the cluster's default.replication.factor.
        request = {t: {"num_partitions": partitions, "replication_factor": -1} for t in missing}
        result = self._admin.create_topics(request, raise_errors=False)
        for entry in result["topics"]:
            error = error_for_code(entry["error_code"])
            if error is not TopicAlreadyExistsError and entry["error_code"] != 0:
                raise error(f"creating topic {entry['name']}: {entry.get('error_message') or error.__name__}")
        # The create call returns once the controller has the topic; wait until brokers can serve it,
        # so a produce or subscribe right after does not race the metadata propagation.
        self._admin.wait_for_topics(missing, timeout_ms=30_000)
        self._known_topics.update(missing)

    def producer(self) -> Producer:
        return _KafkaProducer(self)

    def consumer(self, topics: list[str], group_id: str) -> Consumer:
        self.create_topics(topics, self.partitions)
        return _KafkaConsumer(self, topics, group_id)

    def close(self) -> None:
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None


class _KafkaProducer(Producer):
    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus
        self._producer = KafkaProducer(
            **{
                # kafka-python 3.0's idempotent producer (its default) fails every later message to a
                # partition once the broker has rejected one there (seen with MessageSizeTooLarge): one
                # oversized completion would stop a service's output. Delivery is at least once and
                # storage deduplicates by job id, so idempotence is not needed; one request in flight
                # per connection keeps retries from reordering a partition.
                "enable_idempotence": False,
                "max_in_flight_requests_per_connection": 1,
                **bus._client_options(KafkaProducer),
                "acks": "all",
            }
        )
        # Futures of messages sent since the last flush: flush checks every one of them, because
        # KafkaProducer.flush only waits for completion and does not report failures.
        self._pending: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"message value must be bytes, not {type(value).__name__}")
        if key is not None and not isinstance(key, (bytes, bytearray)):
            raise TypeError(f"message key must be bytes or None, not {type(key).__name__}")
        if topic not in self._bus._known_topics:
            self._bus.create_topics([topic], self._bus.partitions)
        self._pending.append(self._producer.send(topic, value=bytes(value), key=None if key is None else bytes(key)))

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            self._producer.flush(timeout)  # sends what lingers; raises KafkaTimeoutError at the timeout
        except UnknownError:
            # kafka-python 3.0's flush gives up ("Future not done") when a batch the broker found too
            # large is split and re-sent; the per-message futures below wait for the re-sent parts.
            pass
        for future in self._pending:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - a failed delivery; collected below
                pass
            if not future.is_done:
                raise KafkaTimeoutError(f"messages not acknowledged within {timeout} s (kept for the next flush)")
        pending, self._pending = self._pending, []
        failures = [f.exception for f in pending if f.failed()]
        if failures:
            raise KafkaError(f"{len(failures)} of {len(pending)} messages were not delivered; first: {failures[0]!r}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


class _JoinListener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Records that the consumer has joined its group (an assignment, possibly empty, arrived)."""

    def __init__(self) -> None:
        self.joined = False

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.joined = True


class _KafkaConsumer(Consumer):
    def __init__(self, bus: KafkaBus, topics: list[str], group_id: str) -> None:
        self._topics = list(topics)
        self._join_timeout = bus.join_timeout
        self._join_deadline: float | None = None  # set by the first poll, which is when the join starts
        self._consumer = KafkaConsumer(
            **{
                **bus._client_options(KafkaConsumer),
                "group_id": group_id,
                "enable_auto_commit": False,
                "auto_offset_reset": "earliest",
            }
        )
        self._listener = _JoinListener()
        self._consumer.subscribe(self._topics, listener=self._listener)
        # Highest offset committed per partition by this consumer: a commit never moves backwards.
        self._committed: dict[TopicPartition, int] = {}

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        deadline = time.monotonic() + timeout
        if self._join_deadline is None:  # the group join starts with the first poll
            self._join_deadline = time.monotonic() + self._join_timeout
        while True:
            joined = self._listener.joined
            # Until the first join, wait up to the join deadline (see the module docstring), in short
            # slices so that the join is noticed.
            end = deadline if joined else max(deadline, self._join_deadline)
            remaining_ms = max(0, int((end - time.monotonic()) * 1000))
            batches = self._consumer.poll(
                timeout_ms=remaining_ms if joined else min(remaining_ms, 200), max_records=max_records
            )
            if batches:
                return [
                    Message(r.topic, r.partition, r.offset, r.key, r.value)
                    for records in batches.values()
                    for r in records
                ]
            if not joined and self._listener.joined:
                # Joined just now: the caller's timeout starts over, as if the consumer had been ready.
                deadline = time.monotonic() + timeout
                continue
            if time.monotonic() >= end:
                if not joined:
                    raise TimeoutError(
                        f"consumer of {self._topics} did not join its group in {self._join_timeout:.0f} s"
                    )
                return []

    def commit(self, messages: list[Message]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)  # Kafka commits the next offset to read
        offsets = {tp: o for tp, o in offsets.items() if o > self._committed.get(tp, -1)}
        if not offsets:
            return
        # Raises CommitFailedError if a rebalance moved these partitions to another member meanwhile;
        # the messages are then redelivered to that member (at least once, never lost).
        self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        self._committed.update(offsets)

    def lag(self) -> int:
        """Best effort, from the broker's end offsets and the group's committed offsets.

        Like every call on this consumer, make it from the thread that polls.
        """
        partitions = [
            TopicPartition(t, p) for t in self._topics for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        if not partitions:
            return 0
        ends = self._consumer.end_offsets(partitions)
        return sum(max(0, ends[tp] - (self._consumer.committed(tp) or 0)) for tp in partitions)

    def close(self) -> None:
        self._consumer.close(autocommit=False)
