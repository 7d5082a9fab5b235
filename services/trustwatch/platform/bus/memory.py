"""An in-process bus with the Kafka bus's semantics (partitions by key, consumer groups, committed
offsets, redelivery of uncommitted messages after a consumer closes). Used by the embedded mode and
by unit tests; thread-safe."""

from __future__ import annotations

import threading
import time
import zlib

from trustwatch.platform.bus.base import Bus, Consumer, Message, Producer


class _Topic:
    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.partitions: list[list[Message]] = [[] for _ in range(partitions)]


class MemoryBus(Bus):
    def __init__(self, default_partitions: int = 1) -> None:
        self._lock = threading.Condition()
        self._topics: dict[str, _Topic] = {}
        self._default_partitions = default_partitions
        # group id -> (topic, partition) -> next offset to read
        self._committed: dict[str, dict[tuple[str, int], int]] = {}

    # -- admin -------------------------------------------------------------------------------
    def create_topics(self, topics: list[str], partitions: int = 1) -> None:
        with self._lock:
            for name in topics:
                if name not in self._topics:
                    self._topics[name] = _Topic(name, partitions)

    def _topic(self, name: str) -> _Topic:
        # Like a broker with auto-creation on: producing to or consuming from a new topic creates it.
        if name not in self._topics:
            self._topics[name] = _Topic(name, self._default_partitions)
        return self._topics[name]

    def producer(self) -> Producer:
        return _MemoryProducer(self)

    def consumer(self, topics: list[str], group_id: str) -> Consumer:
        return _MemoryConsumer(self, topics, group_id)

    # -- used by producer/consumer ------------------------------------------------------------
    def _append(self, topic: str, value: bytes, key: bytes | None) -> None:
        with self._lock:
            t = self._topic(topic)
            p = (zlib.crc32(key) if key is not None else sum(len(x) for x in t.partitions)) % len(t.partitions)
            log = t.partitions[p]
            log.append(Message(topic, p, len(log), key, value))
            self._lock.notify_all()

    def messages(self, topic: str) -> list[Message]:
        """Every message of a topic, all partitions (for tests and inspection)."""
        with self._lock:
            return [m for part in self._topic(topic).partitions for m in part]


class _MemoryProducer(Producer):
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._pending: list[tuple[str, bytes, bytes | None]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"message value must be bytes, not {type(value).__name__}")
        self._pending.append((topic, bytes(value), key))

    def flush(self, timeout: float = 30.0) -> None:
        pending, self._pending = self._pending, []
        for topic, value, key in pending:
            self._bus._append(topic, value, key)


class _MemoryConsumer(Consumer):
    def __init__(self, bus: MemoryBus, topics: list[str], group_id: str) -> None:
        self._bus = bus
        self._topics = list(topics)
        self._group = group_id
        self._closed = False
        with bus._lock:
            committed = bus._committed.setdefault(group_id, {})
            # Read position starts at the group's committed offsets.
            self._position: dict[tuple[str, int], int] = {}
            for name in self._topics:
                t = bus._topic(name)
                for p in range(len(t.partitions)):
                    self._position[(name, p)] = committed.get((name, p), 0)

    def _available(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for name in self._topics:
            t = self._bus._topic(name)
            for p, log in enumerate(t.partitions):
                pos = self._position.setdefault((name, p), self._bus._committed[self._group].get((name, p), 0))
                take = log[pos : pos + max_records - len(out)]
                if take:
                    out.extend(take)
                    self._position[(name, p)] = pos + len(take)
                if len(out) >= max_records:
                    return out
        return out

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        if self._closed:
            raise RuntimeError("consumer is closed")
        deadline = time.monotonic() + timeout
        with self._bus._lock:
            while True:
                out = self._available(max_records)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                self._bus._lock.wait(remaining)

    def commit(self, messages: list[Message]) -> None:
        with self._bus._lock:
            committed = self._bus._committed[self._group]
            for m in messages:
                k = (m.topic, m.partition)
                committed[k] = max(committed.get(k, 0), m.offset + 1)

    def lag(self) -> int:
        with self._bus._lock:
            committed = self._bus._committed[self._group]
            return sum(
                len(log) - committed.get((name, p), 0)
                for name in self._topics
                for p, log in enumerate(self._bus._topic(name).partitions)
            )

    def assignment(self) -> set[tuple[str, int]] | None:
        # No rebalances here: a consumer holds every partition of its topics.
        with self._bus._lock:
            return {(name, p) for name in self._topics for p in range(len(self._bus._topic(name).partitions))}

    def close(self) -> None:
        self._closed = True
