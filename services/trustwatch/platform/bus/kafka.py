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
  caller's "poll(1 s) returned nothing" must mean "nothing there", not "not joined yet". An empty
  assignment made before a subscribed topic's metadata existed is "not joined yet" too: the wait
  goes on until kafka-python re-joins with the topic's partitions.

A member without a partition gets one soon after it exists: consumers refresh their metadata every
``METADATA_MAX_AGE_MS`` (a partition added to a topic reaches the group at the leader's next
refresh), and a member left without one while the work waits re-joins (TRUSTWATCH_KAFKA_UNASSIGNED_REJOIN_S).

Consumer settings (session timeout, max poll interval and records, request timeout, reconnect
backoff, static group membership) come from the TRUSTWATCH_KAFKA_* variables and TRUSTWATCH_INSTANCE_ID (see
:func:`client_settings`). With static membership a restarted process gets its partitions back as
soon as it rejoins, instead of after the dead member's session timeout.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError, UnknownError
from kafka.errors import for_code as error_for_code
from kafka.partitioner.default import DefaultPartitioner
from kafka.structs import OffsetAndMetadata, TopicPartition

from trustwatch.platform import config
from trustwatch.platform.bus.base import Bus, Consumer, Message, Producer

log = logging.getLogger(__name__)

#: Longest wait of a keep-alive poll (:meth:`_KafkaConsumer.keepalive`), in ms.
KEEPALIVE_POLL_MS = 100
#: Producer record batch size (bytes) and linger (ms); see :class:`_KafkaProducer`.
PRODUCER_BATCH_BYTES = 256 * 1024
PRODUCER_LINGER_MS = 5

#: How often a consumer refreshes its metadata at the latest, in ms (kafka-python's default: 5 min).
METADATA_MAX_AGE_MS = 30_000
#: Seconds after this member's metadata showed its topics' partitions change, with no assignment since,
#: before it re-joins its group (the leader re-balances on such a change by itself, within seconds).
METADATA_REJOIN_S = 20.0
#: Least wait (ms) of a poll while a group re-join is due or in flight, so that a caller that polls
#: without waiting (the streaming generator, while work is in flight) still lets the re-join finish.
REJOIN_POLL_MS = 1000

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


def _positive(env: Callable[[str], str], name: str) -> int:
    raw = env(name)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def instance_id(env: Callable[[str], str] = config.env, environ: Mapping[str, str] = os.environ) -> str:
    """The static group membership id: TRUSTWATCH_INSTANCE_ID; when empty, the pod name (HOSTNAME)
    inside Kubernetes and none elsewhere; ``none``: none. ``""`` means dynamic membership."""
    raw = env("TRUSTWATCH_INSTANCE_ID").strip()
    if raw.lower() == "none":
        return ""
    if not raw and environ.get("KUBERNETES_SERVICE_HOST"):
        raw = environ.get("HOSTNAME", "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:200]


def client_settings(env: Callable[[str], str] = config.env, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Kafka consumer settings from the declared variables, as kafka-python configs: session timeout
    (with a heartbeat a third of it, at most 3 s), max poll interval, max poll records, request
    timeout, the longest reconnect backoff (producers, consumers and the admin client: kafka-python's
    30 s default left services idle for half a minute after a broker came back), and
    ``group_instance_id`` when static membership is on (see :func:`instance_id`)."""
    session = _positive(env, "TRUSTWATCH_KAFKA_SESSION_TIMEOUT_MS")
    options: dict[str, Any] = {
        "session_timeout_ms": session,
        "heartbeat_interval_ms": max(100, min(3000, session // 3)),
        "max_poll_interval_ms": _positive(env, "TRUSTWATCH_KAFKA_MAX_POLL_INTERVAL_MS"),
        "max_poll_records": _positive(env, "TRUSTWATCH_KAFKA_MAX_POLL_RECORDS"),
        "request_timeout_ms": _positive(env, "TRUSTWATCH_KAFKA_REQUEST_TIMEOUT_MS"),
        "reconnect_backoff_max_ms": _positive(env, "TRUSTWATCH_KAFKA_RECONNECT_BACKOFF_MAX_MS"),
    }
    instance = instance_id(env, environ)
    if instance:
        options["group_instance_id"] = instance
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
        unassigned_rejoin_s: float | None = None,
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
            settings = client_settings()
            if unassigned_rejoin_s is None:
                unassigned_rejoin_s = float(config.env("TRUSTWATCH_KAFKA_UNASSIGNED_REJOIN_S"))
        except ValueError as e:
            raise SystemExit(str(e)) from None
        self.unassigned_rejoin_s = unassigned_rejoin_s
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            **security,
            **settings,
            **kwargs,
        }
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


class _OnePartitionShortcut(DefaultPartitioner):  # type: ignore[misc]  # kafka-python is untyped
    """kafka-python's partitioner, without hashing the key when the topic has one partition (the
    answer is that partition either way): its murmur2 is pure Python, ~0.2 ms per keyed message."""

    def partition(
        self, topic: str, key: Any, serialized_key: bytes | None, value: Any, serialized_value: Any, cluster: Any
    ) -> int:
        if serialized_key is not None:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is not None and len(partitions) == 1:
                return int(next(iter(partitions)))
        return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))


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
                # Services produce a batch, then flush: big record batches (kafka-python's default is
                # 16 KiB, eight 2 KiB judgments) cut the client's and the broker's CPU per message about
                # threefold; with one request in flight, each small batch also cost a round trip.
                # A message larger than this still goes alone (up to max_request_size).
                "batch_size": PRODUCER_BATCH_BYTES,
                "linger_ms": PRODUCER_LINGER_MS,
                "partitioner": _OnePartitionShortcut(),
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
    """Records that an assignment (possibly empty) arrived. An empty one is not yet "joined" for the
    join guard of :meth:`_KafkaConsumer.poll` (see :meth:`_KafkaConsumer._ready`)."""

    def __init__(self) -> None:
        self.joined = False
        self.assigned_at = 0.0  # time.monotonic() of the latest assignment

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.joined = True
        self.assigned_at = time.monotonic()


class _KafkaConsumer(Consumer):
    # Static membership ids in use in this process, per group: a second consumer of the same group
    # open at the same time (tests, or two workers) gets "<id>.<n>" so that it does not fence the first.
    _slots: ClassVar[dict[tuple[str, str], set[int]]] = {}
    _slots_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, bus: KafkaBus, topics: list[str], group_id: str) -> None:
        self._topics = list(topics)
        self._group = group_id
        self._join_timeout = bus.join_timeout
        self._join_deadline: float | None = None  # set by the first poll, which is when the join starts
        self._ready_once = False  # the join guard is passed (see _ready); sticky
        options = {
            # The group leader notices partitions added to a subscribed topic only when its metadata is
            # refreshed; kafka-python's 5 min default left a member without a partition that long.
            "metadata_max_age_ms": METADATA_MAX_AGE_MS,
            **bus._client_options(KafkaConsumer),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
        }
        self._max_poll_records: int = (
            options.get("max_poll_records") or KafkaConsumer.DEFAULT_CONFIG["max_poll_records"]
        )
        self._max_poll_interval_s: float = (
            options.get("max_poll_interval_ms") or KafkaConsumer.DEFAULT_CONFIG["max_poll_interval_ms"]
        ) / 1000
        self._slot: tuple[tuple[str, str], int] | None = None
        if options.get("group_instance_id"):
            key = (str(options["group_instance_id"]), group_id)
            with self._slots_lock:
                used = self._slots.setdefault(key, set())
                n = next(i for i in range(len(used) + 1) if i not in used)
                used.add(n)
            self._slot = (key, n)
            if n:
                options["group_instance_id"] = f"{key[0]}.{n}"
        try:
            self._consumer = KafkaConsumer(**options)
        except Exception:
            self._release_slot()
            raise
        self._listener = _JoinListener()
        self._consumer.subscribe(self._topics, listener=self._listener)
        # Highest offset committed per partition by this consumer: a commit never moves backwards.
        self._committed: dict[TopicPartition, int] = {}
        self._last_poll = time.monotonic()
        self._rejoin_after = bus.unassigned_rejoin_s
        # Since when this member has had no partition (None: it has some, or has not joined yet),
        # and the group's committed offsets then (a member with nothing to do is fine; one with
        # nothing while the work waits and nobody commits is stuck).
        self._unassigned_since: float | None = None
        self._unassigned_snapshot: dict[TopicPartition, int] = {}
        # The subscribed topics' partitions as this member's metadata last listed them, and since when
        # (see _resume_dropped_join): a change no assignment followed within METADATA_REJOIN_S re-joins.
        self._known_partitions: frozenset[tuple[str, int]] = frozenset()
        self._known_changed_at: float | None = None

    def _release_slot(self) -> None:
        if self._slot is not None:
            key, n = self._slot
            with self._slots_lock:
                self._slots.get(key, set()).discard(n)
            self._slot = None

    def _resume_dropped_join(self) -> None:
        """Ask again for a group join that kafka-python 3.0 would drop.

        When the leader's metadata of a subscribed topic changes (the topic or a partition appears
        after an assignment was made without it), kafka-python re-joins without setting its
        ``rejoin_needed`` flag; the leader's assignment step then makes ``need_rejoin()`` false. If
        that join outlives the poll that drives it, the next poll sees no reason to join, never waits
        for the join in flight and drops its assignment: the member stays without a partition (seen
        in the contract tests; the likely cause of generators that joined and got no partition in
        stack starts until the unassigned re-join came). Called after
        each poll returned, when nobody drives the join: a join task left in flight without
        ``need_rejoin()`` is such a join, and :meth:`request_rejoin` makes the next poll finish it."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None:
            return
        if getattr(coordinator, "_join_task", None) is not None and not coordinator.need_rejoin():
            log.debug("consumer of %s (group %s): resuming a group join left in flight", self._topics, self._group)
            coordinator.request_rejoin()
            return
        self._rejoin_after_metadata_change(coordinator)

    def _rejoin_after_metadata_change(self, coordinator: Any) -> None:
        """The backstop of :meth:`_resume_dropped_join`, which needs the dropped join still in hand
        (it was not, once, in a CI run: the member kept its old assignment 120 s after a partition was
        added). When this member's metadata lists other partitions of its topics than before and no
        assignment came within :data:`METADATA_REJOIN_S`, the rebalance that should have followed was
        lost (or the leader has not seen the change yet): re-join, once per change."""
        cluster = getattr(self._consumer, "_cluster", None)
        if cluster is None:
            return
        known = frozenset((t, p) for t in self._topics for p in (cluster.partitions_for_topic(t) or ()))
        now = time.monotonic()
        if known != self._known_partitions:
            self._known_partitions, self._known_changed_at = known, now
            return
        changed = self._known_changed_at
        if changed is None or self._listener.assigned_at >= changed or now - changed < METADATA_REJOIN_S:
            return
        self._known_changed_at = None
        if self.assignment() == set(known):
            return  # every partition is this member's already
        log.warning(
            "consumer of %s (group %s): its topics' partitions changed %.0f s ago and no assignment followed; "
            "re-joining the group",
            self._topics,
            self._group,
            now - changed,
        )
        coordinator.request_rejoin()

    def _rejoining(self) -> bool:
        """Whether a group re-join is due or in flight (kafka-python's coordinator, behind guards)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None:
            return False
        try:
            return bool(coordinator.need_rejoin() or getattr(coordinator, "_join_task", None) is not None)
        except Exception:  # noqa: BLE001 - private API: never let it break a poll
            return False

    def _ready(self) -> bool:
        """Whether the first group join is done, for the join guard of :meth:`poll`: an assignment
        arrived and either holds a partition, or is empty while this member's metadata knows every
        subscribed topic's partitions and no re-join is pending (the group gave them to other members).
        An empty assignment made before a topic's metadata existed does not count: kafka-python
        re-joins when the metadata appears (asked for here at once), and the member waits for that."""
        if self._ready_once:
            return True
        if not self._listener.joined:
            return False
        if not self._consumer.assignment():
            cluster = getattr(self._consumer, "_cluster", None)
            coordinator = getattr(self._consumer, "_coordinator", None)
            if cluster is not None and any(not cluster.partitions_for_topic(t) for t in self._topics):
                cluster.request_update()
                return False
            if coordinator is not None and coordinator.need_rejoin():
                return False
        self._ready_once = True
        return True

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        deadline = time.monotonic() + timeout
        if self._join_deadline is None:  # the group join starts with the first poll
            self._join_deadline = time.monotonic() + self._join_timeout
        while True:
            joined = self._ready()
            # Until the first join, wait up to the join deadline (see the module docstring), in short
            # slices so that the join is noticed.
            end = deadline if joined else max(deadline, self._join_deadline)
            remaining_ms = max(0, int((end - time.monotonic()) * 1000))
            if joined and self._rejoining():
                # A re-join cannot finish in a poll that does not wait (kafka-python gives up on the join
                # at once and may drop it): while one is due or in flight, a poll waits up to this long.
                remaining_ms = max(remaining_ms, REJOIN_POLL_MS)
            batches = self._consumer.poll(
                timeout_ms=remaining_ms if joined else min(remaining_ms, 200),
                max_records=max(1, min(max_records, self._max_poll_records)),
            )
            self._last_poll = time.monotonic()
            self._resume_dropped_join()
            if batches:
                self._unassigned_since = None
                return [
                    Message(r.topic, r.partition, r.offset, r.key, r.value)
                    for records in batches.values()
                    for r in records
                ]
            if not joined and self._ready():
                # Joined just now: the caller's timeout starts over, as if the consumer had been ready.
                deadline = time.monotonic() + timeout
                continue
            if time.monotonic() >= end:
                if not joined:
                    if not self._listener.joined:
                        raise TimeoutError(
                            f"consumer of {self._topics} did not join its group in {self._join_timeout:.0f} s"
                        )
                    # Joined, but still without a partition: from here on the unassigned check decides.
                    self._ready_once = True
                self._check_assignment()
                return []

    def _partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(t, p) for t in self._topics for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]

    def _group_lag(self, partitions: list[TopicPartition]) -> tuple[int, dict[TopicPartition, int]]:
        ends = self._consumer.end_offsets(partitions)
        committed = {tp: self._consumer.committed(tp) or 0 for tp in partitions}
        return sum(max(0, ends[tp] - committed[tp]) for tp in partitions), committed

    def _committed_offsets(self) -> dict[TopicPartition, int]:
        return {tp: self._consumer.committed(tp) or 0 for tp in self._partitions()}

    def _check_assignment(self) -> None:
        """A member that joined but has had no partition for ``unassigned_rejoin_s`` while its topics
        hold uncommitted messages and nobody committed any of them meanwhile is stuck (seen: a join
        whose assignment never came): log a warning and re-join the group.

        The group's committed offsets are remembered when the member is first seen without a
        partition, so the re-join comes ``unassigned_rejoin_s`` after that (it used to take them only
        at the first look after the limit and re-join a whole period later: 240 s for a 120 s setting).
        """
        if not self._rejoin_after or self._consumer.assignment():
            self._unassigned_since = None
            return
        now = time.monotonic()
        if self._unassigned_since is None:
            self._unassigned_since, self._unassigned_snapshot = now, self._committed_offsets()
            cluster = getattr(self._consumer, "_cluster", None)
            if cluster is not None:  # a partition added since the last refresh is seen sooner
                cluster.request_update()
            return
        if now - self._unassigned_since < self._rejoin_after:
            return
        partitions = self._partitions()
        if partitions:
            lag, committed = self._group_lag(partitions)
            moved = any(committed[tp] != self._unassigned_snapshot.get(tp, committed[tp]) for tp in committed)
            if lag == 0 or moved:  # nothing waits, or another member is working on it: a new period starts
                self._unassigned_since, self._unassigned_snapshot = now, committed
                return
            log.warning(
                "consumer of %s (group %s) has had no partition for %.0f s while %d messages wait uncommitted; "
                "re-joining the group",
                self._topics,
                self._group,
                now - self._unassigned_since,
                lag,
            )
        else:
            # No metadata for any subscribed topic after a whole period: the lag cannot be known, and a
            # member in this state was seen never to consume (a join that failed with NotCoordinator
            # before the metadata came). Re-join; when the topics truly do not exist yet this costs one
            # rebalance per period.
            log.warning(
                "consumer of %s (group %s) has had no partition and no metadata for its topics for %.0f s; "
                "re-joining the group",
                self._topics,
                self._group,
                now - self._unassigned_since,
            )
        self._unassigned_since, self._unassigned_snapshot = None, {}
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None and hasattr(coordinator, "request_rejoin"):
            coordinator.request_rejoin()
        else:  # the caller re-creates the consumer on this error
            raise TimeoutError(f"consumer of {self._topics} got no partition; re-joining")

    def assignment(self) -> set[tuple[str, int]] | None:
        """The partitions the group gave this consumer (empty before the first join). kafka-python
        keeps the read position of a partition that stays assigned across a rebalance."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def keepalive(self) -> None:
        """Poll with every assigned partition paused: resets the max.poll.interval clock and lets a
        rebalance happen, without returning (or skipping) any message. While a re-join is due or in
        flight the poll waits up to ``KEEPALIVE_POLL_MS``: with no wait at all a rebalance's join and
        sync round trips never completed, and the member kept a partition the group had given to
        another. Otherwise it does not wait: with every partition paused there is nothing to wait for,
        and a dispatcher keeps alive between the sub-batches of every poll (a 100 ms wait there was
        most of its time: 512 completions took about a second, its CPU idle)."""
        assigned = list(self._consumer.assignment())
        if not assigned:
            return
        self._consumer.pause(*assigned)
        try:
            wait_ms = KEEPALIVE_POLL_MS if self._rejoining() else 0
            self._consumer.poll(timeout_ms=wait_ms, update_offsets=False)
            self._last_poll = time.monotonic()
            self._resume_dropped_join()
        finally:
            still = self._consumer.assignment()
            self._consumer.resume(*[tp for tp in assigned if tp in still])

    def commit(self, messages: list[Message]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)  # Kafka commits the next offset to read
        offsets = {tp: o for tp, o in offsets.items() if o > self._committed.get(tp, -1)}
        if not offsets:
            return
        since_poll = time.monotonic() - self._last_poll
        if since_poll > self._max_poll_interval_s:
            log.warning(
                "consumer of %s: %.0f s since the last poll, more than max.poll.interval (%.0f s); the group "
                "may have moved these partitions (process smaller batches or raise "
                "TRUSTWATCH_KAFKA_MAX_POLL_INTERVAL_MS)",
                self._topics,
                since_poll,
                self._max_poll_interval_s,
            )
        # Raises CommitFailedError if a rebalance moved these partitions to another member meanwhile;
        # the messages are then redelivered to that member (at least once, never lost).
        self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        self._committed.update(offsets)

    def lag(self) -> int:
        """Uncommitted messages in the partitions assigned to this consumer (other replicas report
        theirs), from the broker's end offsets and the group's committed offsets; best effort.

        Like every call on this consumer, make it from the thread that polls.
        """
        partitions = sorted(self._consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        if not partitions:
            return 0
        ends = self._consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            committed = self._committed.get(tp)
            if committed is None:
                committed = self._consumer.committed(tp) or 0
            total += max(0, ends[tp] - committed)
        return total

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        finally:
            self._release_slot()
