"""The streaming transport loop (issue 10): items go in while there is room, outputs are produced as
items finish (in any order), offsets are committed up to the contiguous finished prefix only."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.bus.base import Consumer, Message
from trustwatch.platform.runtime import Out, Result, TransientError
from trustwatch.platform.streaming import ItemStream, StreamingWorker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

TOPICS = Topics("tw")


def decode(value: bytes) -> str:
    return value.decode("utf-8")  # b"\xff..." is undecodable


class FakeStream(ItemStream[str]):
    """Finishes a random subset of what is in flight on each collect, in random order (seeded)."""

    def __init__(self, capacity: int = 8, seed: int = 0, poison: frozenset[str] = frozenset(), hold: bool = False):
        self.capacity = capacity
        self.rng = random.Random(seed)
        self.poison = poison
        self.hold = hold  # finish nothing until released (tests drive finish() themselves)
        self.waiting: list[tuple[int, str]] = []
        self.submitted: list[str] = []
        self.max_in_flight = 0
        self.closed = False
        self.transient_once: set[str] = set()

    def submit(self, token: int, item: str) -> None:
        if self.closed:
            raise RuntimeError("stream closed")
        if len(self.waiting) >= self.capacity:
            raise RuntimeError("over capacity")
        if item in self.transient_once:
            self.transient_once.discard(item)
            raise TransientError("endpoint down")
        if item in self.poison:
            raise ValueError(f"cannot take {item}")
        self.waiting.append((token, item))
        self.submitted.append(item)
        self.max_in_flight = max(self.max_in_flight, len(self.waiting))

    def finish(self, items: list[str]) -> list[tuple[int, Result]]:
        done = [(t, i) for t, i in self.waiting if i in items]
        self.waiting = [(t, i) for t, i in self.waiting if i not in items]
        return [(t, Result([Out("out", i.encode(), i.encode())])) for t, i in done]

    def collect(self, timeout: float = 0.0) -> list[tuple[int, Result]]:
        assert not self.closed, "results collected from a closed stream"
        if self.hold or not self.waiting:
            return []
        chosen = self.rng.sample(self.waiting, self.rng.randint(0, len(self.waiting)))
        self.waiting = [w for w in self.waiting if w not in chosen]
        return [(t, Result([Out("out", i.encode(), i.encode())])) for t, i in chosen]

    @property
    def in_flight(self) -> int:
        return len(self.waiting)

    def close(self) -> None:
        self.closed = True


class CheckedBus(MemoryBus):
    """A memory bus whose consumers check, at every commit, that each committed message and every
    earlier one of its partition has its output (or dead letter) flushed; and count polls."""

    def __init__(self, partitions: int = 1) -> None:
        super().__init__(default_partitions=partitions)
        self.commits: list[Message] = []
        self.polls = 0
        self.keepalives = 0
        self.drop_partition: int | None = None  # a "rebalance": assignment() stops holding it

    def consumer(self, topics: list[str], group_id: str) -> Consumer:
        return _Checked(self, super().consumer(topics, group_id))

    def settled(self) -> set[bytes]:
        dead = {pb.DeadLetter.FromString(m.value).payload for m in self.messages(TOPICS.dlq)}
        return {m.value for m in self.messages("out")} | dead

    def committed(self, topic: str = "in") -> dict[int, int]:
        return {p: o for (t, p), o in self._committed.get("g", {}).items() if t == topic}


class _Checked(Consumer):
    def __init__(self, bus: CheckedBus, inner: Consumer) -> None:
        self.bus, self.inner = bus, inner

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        self.bus.polls += 1
        return self.inner.poll(timeout, max_records)

    def commit(self, messages: list[Message]) -> None:
        settled = self.bus.settled()
        for m in messages:
            earlier = [x for x in self.bus.messages(m.topic) if x.partition == m.partition and x.offset <= m.offset]
            missing = [x.offset for x in earlier if x.value not in settled]
            assert not missing, f"commit of {m.topic}[{m.partition}]@{m.offset} before the output of {missing}"
            assert self.bus.drop_partition != m.partition, "committed a partition this member no longer holds"
        self.bus.commits.extend(messages)
        self.inner.commit(messages)

    def assignment(self) -> set[tuple[str, int]] | None:
        held = self.inner.assignment() or set()
        return {(t, p) for t, p in held if p != self.bus.drop_partition}

    def keepalive(self) -> None:
        self.bus.keepalives += 1

    def lag(self) -> int:
        return self.inner.lag()

    def close(self) -> None:
        self.inner.close()


def fill(bus: MemoryBus, n: int, start: int = 0) -> list[bytes]:
    values = [f"m{i:04d}".encode() for i in range(start, start + n)]
    p = bus.producer()
    for v in values:
        p.produce("in", v, key=v)
    p.flush()
    return values


def worker(bus: MemoryBus, streams: list[FakeStream], make=None, **kw) -> StreamingWorker[str]:
    def open_stream() -> FakeStream:
        s = make() if make else FakeStream(seed=len(streams))
        streams.append(s)
        return s

    reg = CollectorRegistry()
    w = StreamingWorker("svc", bus, ["in"], "g", decode, open_stream, ServiceMetrics(reg), TOPICS, **kw)
    w.registry = reg  # type: ignore[attr-defined]  # attached for the test to read
    return w


def drive(w: StreamingWorker[str], turns: int = 2000) -> None:
    for _ in range(turns):
        w.run_once(0)
        if not w.busy and w.consumer.lag() == 0:
            return
    raise AssertionError("the loop did not finish")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_message_is_produced_once_and_committed_only_after_its_output(seed: int) -> None:
    bus = CheckedBus(partitions=3)
    sent = fill(bus, 200)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=8, seed=seed), max_in_flight=5)
    drive(w)
    out = [m.value for m in bus.messages("out")]
    assert sorted(out) == sorted(sent)  # none lost, none twice
    assert bus.messages(TOPICS.dlq) == []
    ends = {p: len(part) for p, part in enumerate(bus._topics["in"].partitions)}
    assert bus.committed() == ends
    assert len(streams) == 1 and streams[0].max_in_flight <= 5  # the bound held
    assert streams[0].max_in_flight == 5  # and was used
    assert w.registry.get_sample_value(  # type: ignore[attr-defined]  # attached above
        "trustwatch_messages_consumed_total", {"service": "svc", "topic": "in"}
    ) == len(sent)


def test_out_of_order_results_commit_up_to_the_first_unfinished() -> None:
    bus = CheckedBus()
    fill(bus, 6)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=10, hold=True), flush_every_s=0)
    w.run_once(0)
    s = streams[0]
    order = [["m0002", "m0004"], ["m0000"], ["m0001", "m0005"], ["m0003"]]
    expected = [{}, {0: 1}, {0: 3}, {0: 6}]
    for batch, committed in zip(order, expected):
        s.collect = lambda timeout=0.0, _s=s, _b=batch: _s.finish(_b)  # type: ignore[method-assign]
        w.run_once(0)
        assert bus.committed() == committed
    assert sorted(m.value for m in bus.messages("out")) == [f"m{i:04d}".encode() for i in range(6)]


def test_while_items_are_in_flight_finished_ones_are_flushed_and_committed_at_most_every_interval() -> None:
    bus = CheckedBus()
    fill(bus, 3)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=10, hold=True), flush_every_s=3600)
    flushes = []
    producer_flush = w.producer.flush
    w.producer.flush = lambda timeout=30.0: (flushes.append(1), producer_flush(timeout))[1]  # type: ignore[method-assign]  # counted
    assert w.run_once(0) == 3
    s = streams[0]
    s.collect = lambda timeout=0.0: s.finish(["m0000"])  # type: ignore[method-assign]  # one result per turn
    assert w.run_once(0) == 1
    assert bus.committed() == {} and flushes == [] and w.busy  # produced, not flushed: not committed
    s.collect = lambda timeout=0.0: []  # type: ignore[method-assign]
    w._last_flush -= 3600  # noqa: SLF001 - as if the interval had passed
    w.run_once(0)
    assert bus.committed() == {0: 1} and len(flushes) == 1
    s.collect = lambda timeout=0.0: s.finish(["m0001", "m0002"])  # type: ignore[method-assign]
    w.run_once(0)
    assert bus.committed() == {0: 3} and len(flushes) == 2 and not w.busy  # none left in flight: at once


def test_closing_flushes_and_commits_what_finished() -> None:
    bus = CheckedBus()
    fill(bus, 2)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=10, hold=True), flush_every_s=3600)
    w.run_once(0)
    s = streams[0]
    s.collect = lambda timeout=0.0: s.finish(["m0001"])  # type: ignore[method-assign]
    w.run_once(0)
    assert bus.committed() == {}
    s.collect = lambda timeout=0.0: s.finish(["m0000"])  # type: ignore[method-assign]
    w.close()
    assert bus.committed() == {0: 2}


def test_at_the_bound_the_loop_stops_polling_and_keeps_the_consumer_alive() -> None:
    bus = CheckedBus()
    fill(bus, 10)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=4, hold=True))
    assert w.run_once(0) == 4  # the stream's capacity is the bound
    polls = bus.polls
    w._last_keepalive = 0.0  # noqa: SLF001 - as if the keep-alive interval had passed
    assert w.run_once(0) == 0
    assert bus.polls == polls  # no poll at the bound
    assert bus.keepalives == 1
    assert streams[0].submitted == ["m0000", "m0001", "m0002", "m0003"]
    streams[0].hold = False
    drive(w)
    assert len(bus.messages("out")) == 10 and streams[0].max_in_flight == 4


def test_a_crash_mid_way_redelivers_exactly_the_uncommitted_suffix() -> None:
    bus = CheckedBus()
    sent = fill(bus, 60)
    streams: list[FakeStream] = []
    first = worker(bus, streams, make=lambda: FakeStream(capacity=8, seed=7))
    for _ in range(12):
        first.run_once(0)
    committed = bus.committed()[0]
    assert 0 < committed < 60
    taken = len(streams[0].submitted)
    assert taken > committed  # some were in flight or finished beyond the prefix: the crash loses them
    # The process dies: no drain, no commit; a new one starts from the group's committed offset.
    second = worker(bus, streams, make=lambda: FakeStream(capacity=8, seed=8))
    drive(second)
    assert streams[1].submitted == [v.decode() for v in sent[committed:]]
    assert {m.value for m in bus.messages("out")} == set(sent)
    assert bus.committed() == {0: 60}


def test_a_transient_fault_abandons_the_stream_and_redelivers_what_is_not_committed() -> None:
    bus = CheckedBus(partitions=2)
    sent = fill(bus, 40)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=6, seed=len(streams)))
    for _ in range(5):
        w.run_once(0)
    real_flush = w.producer.flush
    w.producer.flush = lambda timeout=30.0: (_ for _ in ()).throw(ConnectionError("broker down"))  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        for _ in range(50):
            w.run_once(0)
    committed = dict(bus.committed())
    assert streams[0].closed and w.in_flight == 0  # abandoned: nothing of it can be produced or committed
    w.producer.flush = real_flush  # type: ignore[method-assign]
    drive(w)
    assert len(streams) == 2
    # The new stream got exactly the uncommitted suffix of each partition, from the committed offsets.
    parts = bus._topics["in"].partitions
    again = sorted(m.value.decode() for p, part in enumerate(parts) for m in part[committed.get(p, 0) :])
    assert sorted(streams[1].submitted) == again
    assert {m.value for m in bus.messages("out")} == set(sent)
    assert bus.committed() == {p: len(part) for p, part in enumerate(parts)}


def test_a_transient_submit_fails_the_turn_without_dead_letters() -> None:
    bus = CheckedBus()
    sent = fill(bus, 5)
    streams: list[FakeStream] = []

    def make() -> FakeStream:
        s = FakeStream(seed=1)
        if not streams:
            s.transient_once = {"m0002"}
        return s

    w = worker(bus, streams, make=make)
    with pytest.raises(TransientError):
        w.run_once(0)
    drive(w)
    assert bus.messages(TOPICS.dlq) == []
    assert {m.value for m in bus.messages("out")} == set(sent)


def test_poison_and_undecodable_messages_are_dead_lettered_and_the_rest_goes_on() -> None:
    bus = CheckedBus()
    p = bus.producer()
    for v in [b"m0000", b"\xff\xfe bad", b"m0002", b"m0003"]:
        p.produce("in", v)
    p.flush()
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(poison=frozenset({"m0002"})))
    drive(w)
    dead = [pb.DeadLetter.FromString(m.value) for m in bus.messages(TOPICS.dlq)]
    assert [(d.offset, d.reason.split(":")[0]) for d in dead] == [
        (1, "undecodable message on in"),
        (2, "cannot be processed"),
    ]
    assert "cannot take m0002" in dead[1].reason
    assert sorted(m.value for m in bus.messages("out")) == [b"m0000", b"m0003"]
    assert bus.committed() == {0: 4}
    assert (
        w.registry.get_sample_value(  # type: ignore[attr-defined]  # attached above
            "trustwatch_dead_letters_total", {"service": "svc", "reason_kind": "process"}
        )
        == 1
    )


def test_a_failed_result_is_dead_lettered() -> None:
    bus = CheckedBus()
    fill(bus, 3)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(hold=True))
    w.run_once(0)
    s = streams[0]
    s.collect = lambda timeout=0.0: [
        (t, Result(failed="wrong target") if i == "m0001" else Result([Out("out", i.encode())])) for t, i in s.waiting
    ]  # type: ignore[method-assign]  # noqa: E501
    w.run_once(0)
    assert [pb.DeadLetter.FromString(m.value).reason for m in bus.messages(TOPICS.dlq)] == ["wrong target"]
    assert bus.committed() == {0: 3}


def test_a_partition_moved_away_is_no_longer_committed_here() -> None:
    bus = CheckedBus(partitions=2)
    fill(bus, 20)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(capacity=30, hold=True))
    w.run_once(0)
    assert {k[1] for k in w._tracks} == {0, 1}  # noqa: SLF001
    bus.drop_partition = 1  # the group gives partition 1 to another member
    streams[0].hold = False
    drive_turns = 0
    while w.busy and drive_turns < 500:
        w.run_once(0)
        drive_turns += 1
    # Everything was produced (partition 1's work in flight too), but only partition 0 committed here.
    assert len(bus.messages("out")) == 20
    assert set(bus.committed()) == {0}
    assert {m.partition for m in bus.commits} == {0}


def test_a_commit_refused_by_the_group_is_counted_not_fatal() -> None:
    class CommitFailedError(Exception):
        pass

    bus = CheckedBus()
    fill(bus, 3)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(seed=3))

    def refuse(messages: list[Message]) -> None:
        raise CommitFailedError("rebalanced")

    w.consumer.commit = refuse  # type: ignore[method-assign]
    for _ in range(50):
        w.run_once(0)
        if not w.busy and len(bus.messages("out")) == 3:
            break
    assert len(bus.messages("out")) == 3
    assert w.registry.get_sample_value("trustwatch_commit_failures_total", {"service": "svc"}) >= 1  # type: ignore[attr-defined]


def test_close_drains_the_work_in_flight_and_commits_it() -> None:
    bus = CheckedBus()
    sent = fill(bus, 6)
    streams: list[FakeStream] = []
    w = worker(bus, streams, make=lambda: FakeStream(seed=5, hold=True))
    w.run_once(0)
    streams[0].hold = False
    w.close()
    assert streams[0].closed
    assert {m.value for m in bus.messages("out")} == set(sent)
    assert bus.committed() == {0: 6}


def test_run_forever_breaker_opens_on_a_stream_error_and_recovers() -> None:
    bus = CheckedBus()
    sent = fill(bus, 4)
    streams: list[FakeStream] = []
    broken = {"n": 2}

    def make() -> FakeStream:
        if broken["n"]:
            broken["n"] -= 1
            raise OSError("engine not ready")
        return FakeStream(seed=2)

    from trustwatch.platform.runtime import Backoff

    w = worker(bus, streams, make=make, backoff=Backoff(base=0.001, cap=0.001))
    seen: list[float] = []

    def on_idle() -> None:
        seen.append(w.registry.get_sample_value("trustwatch_worker_healthy", {"service": "svc"}))  # type: ignore[attr-defined]
        if not w.busy and {m.value for m in bus.messages("out")} == set(sent):
            w.stop()

    w.run_forever(poll_timeout=0.01, on_idle=on_idle)
    assert seen and seen[-1] == 1 and w.backoff.failures == 0
    assert {m.value for m in bus.messages("out")} == set(sent)
    assert bus.committed() == {0: 4}
