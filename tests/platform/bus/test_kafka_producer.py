"""The Kafka producer's batching settings and its partitioner (no broker: the client is faked)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.partitioner import default as kafka_partitioner

from trustwatch.platform.bus import kafka as kafka_bus
from trustwatch.platform.bus.kafka import PRODUCER_BATCH_BYTES, KafkaBus, _OnePartitionShortcut


class _Cluster:
    def __init__(self, partitions: set[int]) -> None:
        self.parts = partitions

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts


def _built_producer(monkeypatch: pytest.MonkeyPatch, **options: Any) -> dict[str, Any]:
    built: dict[str, Any] = {}

    class FakeProducer:
        DEFAULT_CONFIG = kafka_bus.KafkaProducer.DEFAULT_CONFIG

        def __init__(self, **kw: Any) -> None:
            built.update(kw)

    monkeypatch.setattr(kafka_bus, "KafkaProducer", FakeProducer)
    KafkaBus("broker:9092", **options).producer()
    return built


def test_the_producer_batches_big_and_waits_for_every_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    kw = _built_producer(monkeypatch)
    assert kw["batch_size"] == PRODUCER_BATCH_BYTES > kafka_bus.KafkaProducer.DEFAULT_CONFIG["batch_size"]
    assert kw["batch_size"] < kw.get("max_request_size", kafka_bus.KafkaProducer.DEFAULT_CONFIG["max_request_size"])
    assert kw["acks"] == "all" and kw["max_in_flight_requests_per_connection"] == 1
    assert isinstance(kw["partitioner"], _OnePartitionShortcut)


def test_explicit_options_override_the_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    kw = _built_producer(monkeypatch, batch_size=16384, linger_ms=0)
    assert (kw["batch_size"], kw["linger_ms"]) == (16384, 0)


def test_one_partition_needs_no_key_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hash(data: bytes) -> int:
        raise AssertionError("murmur2 called for a one-partition topic")

    monkeypatch.setattr(kafka_partitioner, "murmur2", no_hash)
    assert _OnePartitionShortcut().partition("t", b"job", b"job", b"v", b"v", _Cluster({0})) == 0


def test_several_partitions_hash_as_kafka_python_does() -> None:
    cluster = _Cluster({0, 1, 2, 3})
    ours, theirs = _OnePartitionShortcut(), kafka_partitioner.DefaultPartitioner()
    keys = [f"run/task/{i}/0".encode() for i in range(200)]
    got = [ours.partition("t", k, k, b"", b"", cluster) for k in keys]
    assert got == [theirs.partition("t", k, k, b"", b"", cluster) for k in keys]
    assert set(got) == {0, 1, 2, 3}
