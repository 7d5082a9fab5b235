"""The bus contract (trustwatch.platform.bus.base), one set of tests for every implementation.

Each test runs against the in-memory bus (fast) and the Kafka bus on a real broker (marked slow).
Topics get unique names, so the tests share one broker without seeing each other's messages.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from trustwatch.platform.bus.base import Bus, Consumer, Message
from trustwatch.platform.bus.memory import MemoryBus

# Long enough for a Kafka group join on a loaded 2-core machine; the memory bus never waits this long.
WAIT = 30.0


@dataclass
class Backend:
    """One bus implementation; ``open()`` gives another handle on the same messages (for Kafka, a
    new client on the same broker, as another service process would have)."""

    name: str
    _factory: Callable[[], Bus]
    _opened: list[Bus] = field(default_factory=list)

    def open(self) -> Bus:
        bus = self._factory()
        self._opened.append(bus)
        return bus

    def close(self) -> None:
        for bus in self._opened:
            bus.close()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        shared = MemoryBus()
        b = Backend("memory", lambda: shared)
    else:
        from trustwatch.platform.bus.kafka import KafkaBus

        bootstrap = request.getfixturevalue("kafka_broker")  # started only when a Kafka case runs
        b = Backend("kafka", lambda: KafkaBus(bootstrap, client_id="contract-tests"))
    yield b
    b.close()


@pytest.fixture
def bus(backend: Backend) -> Bus:
    return backend.open()


@pytest.fixture
def new_topic(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Unique, Kafka-legal topic names for this test."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", request.node.name)[:150]
    return lambda: f"test.{base}.{uuid.uuid4().hex[:10]}"


def quiet_time(bus: Bus) -> float:
    """How long to watch for (wrong) extra messages: the memory bus delivers synchronously, Kafka
    fetches in the background."""
    return 0.05 if isinstance(bus, MemoryBus) else 1.0


def drain(consumer: Consumer, n: int, quiet: float, timeout: float = WAIT) -> list[Message]:
    """Poll until ``n`` messages arrived (or ``timeout``), then check that nothing more comes in ``quiet`` s."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += consumer.poll(timeout=1.0)
    assert len(got) == n, f"expected {n} messages, got {len(got)}"
    extra = consumer.poll(timeout=quiet)
    assert extra == [], f"unexpected extra messages: {extra[:3]}"
    return got


def produce_all(bus: Bus, topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = bus.producer()
    for i, value in enumerate(values):
        producer.produce(topic, value, key=keys[i] if keys else None)
    producer.flush()
    producer.close()


def values(messages: list[Message]) -> list[bytes]:
    return [m.value for m in messages]


def test_every_message_exactly_once_in_order_per_partition(bus: Bus, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    bus.create_topics([topic], partitions=3)
    sent = [f"m{i:03d}".encode() for i in range(90)]
    keys: list[bytes | None] = [f"k{i % 7}".encode() for i in range(90)]
    produce_all(bus, topic, sent, keys)

    consumer = bus.consumer([topic], "g")
    got = drain(consumer, len(sent), quiet_time(bus))
    consumer.close()

    assert sorted(values(got)) == sorted(sent)  # all of them, none twice
    assert {m.topic for m in got} == {topic}
    by_partition: dict[int, list[Message]] = {}
    for m in got:
        by_partition.setdefault(m.partition, []).append(m)
    for part, msgs in by_partition.items():
        offsets = [m.offset for m in msgs]
        assert offsets == list(range(len(msgs))), f"partition {part}: offsets {offsets[:10]}..."
        # Within a partition, messages come in the order they were produced.
        assert values(msgs) == sorted(values(msgs))
    for m in got:
        assert m.key == keys[sent.index(m.value)]


def test_a_key_always_routes_to_the_same_partition(backend: Backend, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    bus = backend.open()
    bus.create_topics([topic], partitions=4)
    keys = [f"target-{i}".encode() for i in range(16)]
    # Two producers on two handles: routing depends on the key only, not on the producer.
    produce_all(bus, topic, [b"first-" + k for k in keys], list(keys))
    produce_all(backend.open(), topic, [b"second-" + k for k in keys], list(keys))

    consumer = bus.consumer([topic], "g")
    got = drain(consumer, 2 * len(keys), quiet_time(bus))
    consumer.close()

    partitions_of: dict[bytes | None, set[int]] = {}
    for m in got:
        partitions_of.setdefault(m.key, set()).add(m.partition)
    assert set(partitions_of) == set(keys)
    assert all(len(p) == 1 for p in partitions_of.values()), partitions_of
    used = set().union(*partitions_of.values())
    assert used <= set(range(4))
    assert len(used) > 1, "16 keys all hashed to one partition: keys are not used for routing"


def test_uncommitted_messages_are_redelivered_to_the_group_committed_ones_are_not(
    bus: Bus, new_topic: Callable[[], str]
) -> None:
    topic = new_topic()
    sent = [f"job-{i}".encode() for i in range(10)]
    produce_all(bus, topic, sent)

    first = bus.consumer([topic], "workers")
    got = drain(first, 10, quiet_time(bus))
    assert values(got) == sent
    first.commit(got[:4])  # processed the first four, then "crashed"
    first.close()

    second = bus.consumer([topic], "workers")
    redelivered = drain(second, 6, quiet_time(bus))
    assert values(redelivered) == sent[4:]
    second.commit(redelivered)
    second.close()

    third = bus.consumer([topic], "workers")
    assert third.poll(timeout=quiet_time(bus)) == []
    third.close()


def test_commit_never_moves_the_group_backwards(bus: Bus, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    produce_all(bus, topic, [b"a", b"b", b"c"])
    consumer = bus.consumer([topic], "g")
    got = drain(consumer, 3, quiet_time(bus))
    consumer.commit(got)
    consumer.commit(got[:1])  # a late commit of an older message
    consumer.close()

    again = bus.consumer([topic], "g")
    assert again.poll(timeout=quiet_time(bus)) == []
    again.close()


def test_two_groups_each_see_every_message(bus: Bus, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    bus.create_topics([topic], partitions=2)
    sent = [f"r{i}".encode() for i in range(20)]
    produce_all(bus, topic, sent, [str(i).encode() for i in range(20)])

    aggregator = bus.consumer([topic], "aggregator")
    archiver = bus.consumer([topic], "archiver")
    a = drain(aggregator, 20, quiet_time(bus))
    aggregator.commit(a)  # one group's commits do not affect the other
    b = drain(archiver, 20, quiet_time(bus))
    aggregator.close()
    archiver.close()
    assert sorted(values(a)) == sorted(sent)
    assert sorted(values(b)) == sorted(sent)


def test_consumer_sees_messages_produced_after_it_subscribed(backend: Backend, new_topic: Callable[[], str]) -> None:
    topic = new_topic()  # does not exist yet anywhere
    bus = backend.open()
    consumer = bus.consumer([topic], "g")
    assert consumer.poll(timeout=0.5) == []
    produce_all(backend.open(), topic, [b"late"])
    got = drain(consumer, 1, quiet_time(bus))
    consumer.close()
    assert values(got) == [b"late"]


def test_poll_returns_empty_after_its_timeout_on_an_empty_topic(bus: Bus, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    bus.create_topics([topic])
    consumer = bus.consumer([topic], "g")
    for _ in range(2):  # the first poll may also wait for a group join; the second only for data
        began = time.monotonic()
        assert consumer.poll(timeout=0.5) == []
        elapsed = time.monotonic() - began
        assert elapsed >= 0.45
    assert elapsed < 5.0, f"an empty poll(0.5) took {elapsed:.1f} s"
    consumer.close()


def test_create_topics_is_idempotent(backend: Backend, new_topic: Callable[[], str]) -> None:
    topic, other = new_topic(), new_topic()
    backend.open().create_topics([topic], partitions=2)
    # Again, from another handle, with another count and a new topic beside it: no error, the
    # existing topic keeps its two partitions, the new one is created.
    backend.open().create_topics([topic, other], partitions=5)
    bus = backend.open()
    bus.create_topics([topic, topic], partitions=2)

    keys = [f"k{i}".encode() for i in range(40)]
    produce_all(bus, topic, [b"x"] * 40, list(keys))
    produce_all(bus, other, [b"y"] * 40, list(keys))
    consumer = bus.consumer([topic, other], "g")
    got = drain(consumer, 80, quiet_time(bus))
    consumer.close()
    assert {m.partition for m in got if m.topic == topic} == {0, 1}
    assert {m.partition for m in got if m.topic == other} <= set(range(5))


def test_lag_counts_uncommitted_messages(bus: Bus, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    produce_all(bus, topic, [f"{i}".encode() for i in range(5)])
    consumer = bus.consumer([topic], "g")
    got = drain(consumer, 5, quiet_time(bus))
    assert consumer.lag() == 5  # read but not committed is still lag
    consumer.commit(got[:2])
    assert consumer.lag() == 3
    consumer.commit(got)
    assert consumer.lag() == 0
    consumer.close()


@pytest.mark.parametrize("bad", ["text", 42, None, {"a": 1}, [b"x"]])
def test_producing_a_non_bytes_value_raises(bus: Bus, new_topic: Callable[[], str], bad: object) -> None:
    topic = new_topic()
    producer = bus.producer()
    with pytest.raises(TypeError):
        producer.produce(topic, bad)
    # The rejected value was not queued: the producer goes on with only the good message.
    producer.produce(topic, b"good")
    producer.flush()
    producer.close()
    consumer = bus.consumer([topic], "g")
    assert values(drain(consumer, 1, quiet_time(bus))) == [b"good"]
    consumer.close()


@pytest.mark.slow
def test_kafka_flush_raises_when_the_broker_rejects_a_message(kafka_broker: str, new_topic: Callable[[], str]) -> None:
    """Kafka only (the memory bus cannot fail a delivery): a rejected message must not pass silently."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    from trustwatch.platform.bus.kafka import KafkaBus

    topic = new_topic()
    bus = KafkaBus(kafka_broker)
    bus.create_topics([topic])
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "256"})])
    admin.close()

    producer = bus.producer()
    producer.produce(topic, b"small")
    producer.produce(topic, b"x" * 4096)  # over the topic's limit: the broker refuses it
    with pytest.raises(KafkaError, match="1 of 2 messages were not delivered"):
        producer.flush(timeout=60)
    producer.produce(topic, b"after")
    producer.flush()  # the failure was reported once; the producer goes on
    producer.close()

    consumer = bus.consumer([topic], "g")
    assert values(drain(consumer, 2, quiet_time(bus))) == [b"small", b"after"]
    consumer.close()
    bus.close()


def test_a_new_consumer_first_short_poll_sees_waiting_messages(bus: Bus, new_topic: Callable[[], str]) -> None:
    """A short poll on a fresh consumer means "is there anything?", not "has the group formed yet?"."""
    topic = new_topic()
    produce_all(bus, topic, [b"a", b"b", b"c"])
    consumer = bus.consumer([topic], "g")
    assert values(consumer.poll(timeout=0.1)) == [b"a", b"b", b"c"]
    consumer.close()


def test_assignment_holds_the_partitions_a_lone_member_reads(bus: Bus, new_topic: Callable[[], str]) -> None:
    topic = new_topic()
    bus.create_topics([topic], partitions=3)
    produce_all(bus, topic, [f"{i}".encode() for i in range(12)], [f"k{i}".encode() for i in range(12)])
    consumer = bus.consumer([topic], "g")
    got = drain(consumer, 12, quiet_time(bus))
    held = consumer.assignment()
    assert held == {(topic, p) for p in range(3)}  # the only member of its group holds every partition
    assert {(m.topic, m.partition) for m in got} <= held
    consumer.keepalive()  # keeping alive does not give partitions away
    assert consumer.assignment() == held
    consumer.close()


@pytest.mark.slow
def test_kafka_assignment_changes_when_a_second_member_joins(kafka_broker: str, new_topic: Callable[[], str]) -> None:
    """Kafka only (the memory bus has no rebalances): a partition given to another member leaves the
    first member's assignment, which is how a streaming loop learns to stop tracking it."""
    from trustwatch.platform.bus.kafka import KafkaBus

    topic = new_topic()
    bus = KafkaBus(kafka_broker, partitions=2)
    bus.create_topics([topic], partitions=2)
    first = bus.consumer([topic], "g")
    assert first.poll(timeout=0.5) == []
    assert first.assignment() == {(topic, 0), (topic, 1)}
    # The first member keeps alive (without taking messages) in a thread of its own, as a busy
    # streaming loop does, while the second one's first poll waits for the join.
    stop, held = threading.Event(), [first.assignment()]

    def keep_first_alive() -> None:
        while not stop.is_set():
            first.keepalive()
            held.append(first.assignment())
            time.sleep(0.1)

    keeper = threading.Thread(target=keep_first_alive)
    keeper.start()
    second = bus.consumer([topic], "g")
    try:
        deadline = time.monotonic() + WAIT
        a, b = held[-1], second.assignment()
        while time.monotonic() < deadline:
            second.poll(timeout=0.2)
            a, b = held[-1], second.assignment()
            if a and b and not a & b and a | b == {(topic, 0), (topic, 1)}:
                break
    finally:
        stop.set()
        keeper.join()
    assert a and b and not a & b and a | b == {(topic, 0), (topic, 1)}, (a, b)
    second.close()
    first.close()
    bus.close()
