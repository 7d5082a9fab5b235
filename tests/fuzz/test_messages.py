"""Fuzzing the bus decoders (platform/messages.py decode_*, aggregator decode_dead_letter and the
dead-letter attribution): over arbitrary bytes and over mutated valid protobufs, a decoder either
returns a message that meets its contract or raises InvalidMessage (a ValueError naming what is wrong).
Nothing else may escape: the transport loop dead-letters any decode failure, but an undocumented
exception type there would be a decoder bug."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.fuzz._fuzz import fuzz, utf8_chars
from trustwatch.aggregator.service import dead_letter_row, decode_dead_letter
from trustwatch.platform.bus.base import Topics
from trustwatch.platform.messages import (
    InvalidMessage,
    decode_completion,
    decode_job,
    decode_judgment,
    decode_run_event,
)
from trustwatch.v1 import messages_pb2 as pb

DECODERS: dict[str, tuple[type[Message], Callable[[bytes], Any], tuple[str, ...]]] = {
    "job": (pb.PromptJob, decode_job, ("ref.job_id", "ref.run_id", "ref.task", "prompt")),
    "completion": (pb.Completion, decode_completion, ("ref.job_id", "ref.run_id", "ref.task")),
    "judgment": (pb.Judgment, decode_judgment, ("ref.job_id", "ref.run_id", "ref.task", "evaluator")),
    "run_event": (pb.RunEvent, decode_run_event, ("run_id",)),
    "dead_letter": (pb.DeadLetter, decode_dead_letter, ("source_topic",)),
}
TOPICS = Topics("tw")

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.text(utf8_chars, max_size=24),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=24),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
}


def _field(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        inner = messages(f.message_type, depth + 1)
    elif f.type == FieldDescriptor.TYPE_ENUM:
        inner = st.sampled_from([v.number for v in f.enum_type.values])
    else:
        inner = _SCALARS[f.type]
    return st.lists(inner, max_size=3) if f.is_repeated else inner


def messages(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values of a ``desc`` message, any subset set (so required fields may be missing)."""
    if depth > 2:
        return st.just({})
    return st.fixed_dictionaries({}, optional={f.name: _field(f, depth) for f in desc.fields})


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, v in values.items():
        f = cls.DESCRIPTOR.fields_by_name[name]
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            sub = [_build(f.message_type._concrete_class, x) for x in (v if f.is_repeated else [v])]
            getattr(msg, name).extend(sub) if f.is_repeated else getattr(msg, name).CopyFrom(sub[0])
        elif f.is_repeated:
            getattr(msg, name).extend(v)
        else:
            setattr(msg, name, v)
    return msg


@st.composite
def mutated(draw: st.DrawFn, cls: type[Message]) -> bytes:
    """A valid serialized ``cls``, then cut, spliced, bit-flipped or padded."""
    data = bytearray(_build(cls, draw(messages(cls.DESCRIPTOR))).SerializeToString())
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "append", "varint"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "append":  # an unknown or repeated field, or a length running past the end
            data += draw(st.sampled_from([b"\x78\x01", b"\x0a\xff\xff\xff\xff\x0f", b"\x82\x01\x03abc", b"\xff"]))
        elif op == "varint":  # an over-long varint
            data[at:at] = b"\x08" + b"\xff" * draw(st.integers(1, 12))
    return bytes(data)


def _get(msg: Any, path: str) -> Any:
    for name in path.split("."):
        msg = getattr(msg, name)
    return msg


def _check(kind: str, data: bytes) -> None:
    cls, decode, required = DECODERS[kind]
    try:
        msg = decode(data)
    except InvalidMessage as exc:
        assert str(exc), "an InvalidMessage must say what is wrong"
        return
    assert isinstance(msg, cls)
    assert all(_get(msg, f) for f in required), f"{kind} decoded without a required field"


def _fuzz_decoder(budget: str, fast: int, many: int, kind: str, data: st.SearchStrategy[bytes]) -> None:
    @fuzz(budget, fast, many, data)
    def decodes_or_says_why(payload: bytes) -> None:
        _check(kind, payload)


def test_decoders_over_arbitrary_bytes(budget: str) -> None:
    for kind in DECODERS:
        _fuzz_decoder(budget, 30, 250, kind, st.binary(max_size=256))


def test_decoders_over_mutated_valid_messages(budget: str) -> None:
    for kind, (cls, _, _) in DECODERS.items():
        _fuzz_decoder(budget, 30, 250, kind, mutated(cls))


def _fuzz_round_trip(budget: str, kind: str) -> None:
    cls, decode, required = DECODERS[kind]

    @fuzz(budget, 10, 60, messages(cls.DESCRIPTOR))
    def round_trip(values: dict[str, Any]) -> None:
        msg = _build(cls, values)
        if all(_get(msg, f) for f in required):
            assert decode(msg.SerializeToString()) == msg
        else:
            _check(kind, msg.SerializeToString())


def test_valid_messages_round_trip(budget: str) -> None:
    for kind in DECODERS:
        _fuzz_round_trip(budget, kind)


def test_dead_letter_attribution_never_raises(budget: str) -> None:
    """The aggregator stores any dead letter, whatever its payload: attribution falls back to the key."""
    topics = st.sampled_from([TOPICS.runs, TOPICS.dlq, TOPICS.jobs("t"), TOPICS.completions, TOPICS.judgments, "x"])
    payloads = st.one_of(st.binary(max_size=128), *(mutated(c) for c, _, _ in DECODERS.values()))

    @fuzz(budget, 50, 300, topics, payloads, st.binary(max_size=32))
    def attributed(topic: str, payload: bytes, key: bytes) -> None:
        dl = pb.DeadLetter(source_topic=topic, payload=payload, key=key, reason="r")
        row = dead_letter_row(dl, TOPICS)
        assert row.payload == payload and row.source_topic == topic
        assert row.job_id is None or isinstance(row.job_id, str)
