"""The bus contract. Implementations: :mod:`trustwatch.platform.bus.memory`, :mod:`trustwatch.platform.bus.kafka`."""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Producer(abc.ABC):
    @abc.abstractmethod
    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue a message. It is durable only after :meth:`flush` returns."""

    @abc.abstractmethod
    def flush(self, timeout: float = 30.0) -> None:
        """Block until every queued message is acknowledged; raise if any could not be delivered."""

    def close(self) -> None:
        self.flush()


class Consumer(abc.ABC):
    @abc.abstractmethod
    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        """Up to ``max_records`` messages not yet returned by this consumer; [] after ``timeout`` s."""

    @abc.abstractmethod
    def commit(self, messages: list[Message]) -> None:
        """Mark these messages (and everything before them in their partitions) as processed.

        Call it only after the output derived from them is flushed or stored.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group without committing anything further."""

    def lag(self) -> int:
        """Messages not yet committed by this group in the partitions this consumer is assigned
        (every partition of the subscribed topics when the bus has no assignment); best effort."""
        return 0

    def assignment(self) -> set[tuple[str, int]] | None:
        """The (topic, partition) pairs this consumer holds now; None when the bus does not say.

        A partition that leaves this set was given to another group member (a rebalance): messages
        of it taken before and not yet committed are delivered again to that member, so a loop that
        keeps messages in flight stops tracking them (and does not commit them). A partition kept
        across a rebalance keeps its read position."""
        return None

    def keepalive(self) -> None:
        """Tell the group this consumer is still working, without taking new messages (call it
        between the steps of a long batch, so the batch does not outlive ``max.poll.interval``)."""
        return None


class Bus(abc.ABC):
    @abc.abstractmethod
    def producer(self) -> Producer: ...

    @abc.abstractmethod
    def consumer(self, topics: list[str], group_id: str) -> Consumer:
        """A consumer that starts at the group's committed offsets (or the earliest message)."""

    @abc.abstractmethod
    def create_topics(self, topics: list[str], partitions: int = 1) -> None:
        """Create topics that do not exist yet; existing ones are left as they are."""

    def close(self) -> None:
        return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Topics:
    """Topic names, all under one prefix."""

    prefix: str = "trustwatch"

    def jobs(self, target: str) -> str:
        """Each target has its own job topic, so a generator consumes only the model it serves."""
        return f"{self.prefix}.jobs.{_UNSAFE.sub('_', target)}"

    @property
    def completions(self) -> str:
        return f"{self.prefix}.completions"

    @property
    def judgments(self) -> str:
        return f"{self.prefix}.judgments"

    @property
    def runs(self) -> str:
        return f"{self.prefix}.runs"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"
