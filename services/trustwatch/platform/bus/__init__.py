"""The message bus: one interface, two implementations (in-memory and Kafka) that pass the same
contract tests (tests/platform/bus/test_contract.py).

Semantics both keep:
- at-least-once delivery: a consumer sees a message again after a restart unless its offset was
  committed; services commit only after their output is produced (flushed) or stored;
- per-partition order, with the partition chosen from the message key;
- consumer groups: consumers sharing a group id share the topic's partitions and its committed offsets.
"""

from trustwatch.platform.bus.base import Bus, Consumer, Message, Producer, Topics
from trustwatch.platform.bus.memory import MemoryBus


def kafka_bus(bootstrap: str, **kwargs: object) -> Bus:
    """The Kafka implementation (imported lazily so the embedded mode never needs kafka-python)."""
    from trustwatch.platform.bus.kafka import KafkaBus

    return KafkaBus(bootstrap, **kwargs)  # type: ignore[arg-type]  # KafkaBus options, passed through untyped


__all__ = ["Bus", "Consumer", "MemoryBus", "Message", "Producer", "Topics", "kafka_bus"]
