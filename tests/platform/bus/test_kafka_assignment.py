"""Group join and assignment on a real broker (slow): a member that joined before its topic (or a
partition of it) existed gets its partition soon after it appears, an empty first assignment does
not pass the join guard, and a member left without a partition while the work waits re-joins after
``unassigned_rejoin_s``, not twice that.

The time bounds are behaviours (a refresh or a re-join happened), set well above what they take and
well below what the old behaviour took, so that a loaded 2-core machine does not make them flaky.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.slow

LOGGER = "trustwatch.platform.bus.kafka"


@pytest.fixture(scope="module")
def strict_broker() -> Iterator[str]:
    """A broker that does not create a topic when a client asks for its metadata (the session's
    broker does, as the stack's does, so a missing topic would appear at once)."""
    from tests.harness.kafka import KafkaBroker

    with KafkaBroker(overrides={"auto.create.topics.enable": "false"}) as broker:
        yield broker.bootstrap


@pytest.fixture
def name() -> str:
    return uuid.uuid4().hex[:8]


def _produce(bus, topic: str, n: int) -> None:
    p = bus.producer()
    for i in range(n):
        p.produce(topic, f"m{i}".encode())
    p.flush()
    p.close()


class _KeepAlive:
    """Keeps a consumer in its group (taking part in rebalances) without consuming or committing."""

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.consumer.keepalive()
            self._stop.wait(0.1)

    def __enter__(self) -> _KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def buses() -> Iterator[list]:
    opened: list = []
    yield opened
    for b in opened:
        b.close()


def test_a_member_that_joins_before_its_topic_exists_gets_it_in_its_first_poll(buses, strict_broker, name):
    """The consumer joins while the topic is missing (so its first assignment is empty); its first
    poll must not take that for "joined, nothing there" but wait for the partition and return the
    message produced once the topic exists."""
    from trustwatch.platform.bus.kafka import KafkaBus, _KafkaConsumer

    cbus = KafkaBus(strict_broker, client_id=f"early-{name}", unassigned_rejoin_s=0)
    other = KafkaBus(strict_broker, client_id=f"late-{name}")
    buses += [cbus, other]
    topic = f"early-{name}"
    c = _KafkaConsumer(cbus, [topic], f"g-{topic}")  # not bus.consumer(): that would create the topic first
    seen: dict[str, float | bool] = {}

    def create_later() -> None:
        deadline = time.monotonic() + 30
        while not c._listener.joined and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["empty_join"] = c._listener.joined
        time.sleep(8.0)  # longer than the poll's own timeout below: the old guard returned [] by then
        other.create_topics([topic], 1)
        _produce(other, topic, 1)
        seen["created"] = time.monotonic()

    t = threading.Thread(target=create_later, daemon=True)
    t.start()
    try:
        got = c.poll(5.0, 10)
        returned = time.monotonic()
        t.join(40)
        assert seen.get("empty_join"), "the consumer never joined its group while the topic was missing"
        assert [m.value for m in got] == [b"m0"], "the first poll returned before the partition was assigned"
        assert c.assignment() == {(topic, 0)}
        # kafka-python re-joins as soon as the topic's metadata appears (it retries a missing topic).
        assert returned - float(seen["created"]) < 20
    finally:
        c.close()


def test_a_partition_added_later_reaches_the_member_that_had_none(buses, kafka_broker, name):
    """Two members, one partition: the second has none. Once a second partition is created, the group
    leader sees it at its next metadata refresh and re-balances; kafka-python's 5 min metadata age
    left the member without work that long."""
    from kafka import KafkaAdminClient

    from trustwatch.platform.bus.kafka import KafkaBus

    bus_a = KafkaBus(kafka_broker, client_id=f"a-{name}", partitions=1, unassigned_rejoin_s=0)
    bus_b = KafkaBus(kafka_broker, client_id=f"b-{name}", partitions=1, unassigned_rejoin_s=0)
    buses += [bus_a, bus_b]
    topic, group = f"grow-{name}", f"g-grow-{name}"
    _produce(bus_a, topic, 1)
    a = bus_a.consumer([topic], group)
    b = None
    try:
        assert a.poll(30.0, 1), "the first member got nothing"
        with _KeepAlive(a):
            b = bus_b.consumer([topic], group)
            assert b.poll(1.0, 10) == []
            assert b.assignment() == set(), "the second member should start without a partition"
            admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
            try:
                admin.create_partitions({topic: 2})
            finally:
                admin.close()
            added = time.monotonic()
            while b.assignment() != {(topic, 1)} and time.monotonic() - added < 120:
                b.poll(0.5, 10)
            waited = time.monotonic() - added
        assert b.assignment() == {(topic, 1)}, "the member never got the added partition"
        assert waited < 90, f"the added partition reached the member after {waited:.0f} s"
    finally:
        if b is not None:
            b.close()
        a.close()


def test_a_member_without_a_partition_while_work_waits_rejoins_after_the_setting(buses, kafka_broker, name, caplog):
    """The member holding the only partition keeps its place in the group but commits nothing; the
    other member, without a partition while messages wait, re-joins once ``unassigned_rejoin_s`` has
    passed since it was first seen without one (it used to take twice the setting)."""
    from trustwatch.platform.bus.kafka import KafkaBus

    rejoin = 8.0
    # Member ids start with the client id and the range assignor sorts them: "a-" holds the partition.
    bus_a = KafkaBus(kafka_broker, client_id=f"a-{name}", partitions=1, unassigned_rejoin_s=0)
    bus_b = KafkaBus(kafka_broker, client_id=f"b-{name}", partitions=1, unassigned_rejoin_s=rejoin)
    buses += [bus_a, bus_b]
    topic, group = f"idle-{name}", f"g-idle-{name}"
    _produce(bus_a, topic, 5)
    a = bus_a.consumer([topic], group)
    b = None
    caplog.set_level(logging.WARNING, logger=LOGGER)
    try:
        assert a.poll(30.0, 1), "the first member got nothing"
        with _KeepAlive(a):
            b = bus_b.consumer([topic], group)
            assert b.poll(1.0, 10) == []
            assert b.assignment() == set(), "the second member should be without a partition"
            unassigned = time.monotonic()
            rejoined = None
            while rejoined is None and time.monotonic() - unassigned < 4 * rejoin:
                assert b.poll(0.5, 10) == []
                if any("re-joining the group" in r.getMessage() for r in caplog.records if r.name == LOGGER):
                    rejoined = time.monotonic() - unassigned
        assert rejoined is not None, "the member without a partition never re-joined"
        assert rejoin - 1 <= rejoined < 1.6 * rejoin, f"re-joined after {rejoined:.1f} s for a {rejoin:.0f} s setting"
    finally:
        if b is not None:
            b.close()
        a.close()


def test_a_rebalance_started_by_a_zero_wait_poll_still_delivers_the_assignment(buses, kafka_broker, name):
    """A lone member busy elsewhere polls without waiting (as the streaming generator does while jobs
    are in flight). When a partition is added, its metadata refresh starts a re-join that no poll of
    0 s can finish; kafka-python then dropped the join and its assignment, and the member never got
    the new partition. The consumer resumes such a join, so a later zero-wait poll completes it."""
    from kafka import KafkaAdminClient

    from trustwatch.platform.bus.kafka import KafkaBus

    bus = KafkaBus(kafka_broker, client_id=f"busy-{name}", partitions=1, unassigned_rejoin_s=0)
    buses.append(bus)
    topic = f"busy-{name}"
    _produce(bus, topic, 1)
    c = bus.consumer([topic], f"g-{topic}")
    try:
        assert c.poll(30.0, 1), "the member got nothing"
        admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
        try:
            admin.create_partitions({topic: 2})
        finally:
            admin.close()
        added = time.monotonic()
        while c.assignment() != {(topic, 0), (topic, 1)} and time.monotonic() - added < 120:
            c.poll(0.0, 10)
            time.sleep(0.05)
        waited = time.monotonic() - added
        assert c.assignment() == {(topic, 0), (topic, 1)}, "the re-join's assignment was dropped"
        assert waited < 90, f"the added partition reached the member after {waited:.0f} s"
    finally:
        c.close()
