"""Job ids, record encoding and the decoders of every payload on the bus (with their contracts).

Conversions to the benchmark's own types live with their users: completion -> EvalItem and verdict ->
Judgment in the judge dispatcher, stored judgment -> Verdict in ``benchmark.scoring``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from trustwatch.v1 import messages_pb2 as pb


class InvalidMessage(ValueError):
    """A payload that is not the message its topic carries (not protobuf, or another message type),
    or one that decoded but breaks the contract (e.g. no job id). Every ``decode_*`` raises only this."""


M = TypeVar("M", bound=Message)


def parse_message(cls: type[M], data: bytes) -> M:
    """``data`` parsed as ``cls``; protobuf's DecodeError becomes an InvalidMessage saying what was expected."""
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise InvalidMessage(
            f"payload of {len(data)} bytes is not a serialized {cls.DESCRIPTOR.name} ({exc}); "
            "check what produces to this topic"
        ) from None


def job_id(run_id: str, task: str, item_id: str, sample: int) -> str:
    """The deterministic id every message of one prompt carries."""
    return f"{run_id}/{task}/{item_id}/{sample}"


def job_ref(run_id: str, task: str, item_id: str, sample: int, target: str) -> pb.JobRef:
    """The identity of one prompt, with its :func:`job_id`."""
    return pb.JobRef(
        job_id=job_id(run_id, task, item_id, sample),
        run_id=run_id,
        task=task,
        item_id=item_id,
        sample=sample,
        target=target,
    )


def judgment_id(job: str, evaluator: str) -> str:
    return f"{job}#{evaluator}"


def job_seed(run_seed: int, job: str) -> int:
    """A per-job sampling seed: the same job samples the same way in any batch or replica."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{job}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps_record(record: Mapping[str, Any]) -> str:
    # NaN is kept (as JSON's non-standard NaN token, which json.loads reads back): records of
    # implicit_SocialChemistry101 have NaN fields and must round-trip unchanged.
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def loads_record(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _require(msg: Any, fields: tuple[str, ...], kind: str) -> None:
    """Every dotted path in ``fields`` (e.g. ``ref.job_id``) is set on ``msg``."""
    missing = [f for f in fields if not _get(msg, f)]
    if missing:
        raise InvalidMessage(f"{kind} lacks required field(s): {', '.join(missing)}")


def _get(msg: Any, path: str) -> Any:
    for name in path.split("."):
        msg = getattr(msg, name)
    return msg


#: JobRef's fields that messages written before it (trustwatch 0.1) carried flat, as ``legacy_<name>``.
_LEGACY_REF = ("job_id", "run_id", "task", "item_id", "sample", "target")


def lift_legacy_ref(msg: pb.PromptJob | pb.Completion | pb.Judgment) -> None:
    """A message written before JobRef gets its flat identity moved into ``ref`` (a PromptJob's target
    name comes from its Target); one with a ``ref`` is left as it is."""
    if msg.HasField("ref") or not msg.legacy_job_id:
        return
    for name in _LEGACY_REF:
        legacy = f"legacy_{name}"
        if isinstance(msg, pb.PromptJob) and name == "target":
            msg.ref.target = msg.target.name
            continue
        setattr(msg.ref, name, getattr(msg, legacy))
        msg.ClearField(legacy)


_REF = ("ref.job_id", "ref.run_id", "ref.task")


def decode_job(data: bytes) -> pb.PromptJob:
    msg = parse_message(pb.PromptJob, data)
    lift_legacy_ref(msg)
    _require(msg, (*_REF, "prompt"), "PromptJob")
    return msg


def decode_completion(data: bytes) -> pb.Completion:
    msg = parse_message(pb.Completion, data)
    lift_legacy_ref(msg)
    _require(msg, _REF, "Completion")
    return msg


def decode_judgment(data: bytes) -> pb.Judgment:
    msg = parse_message(pb.Judgment, data)
    lift_legacy_ref(msg)
    _require(msg, (*_REF, "evaluator"), "Judgment")
    return msg


def decode_run_event(data: bytes) -> pb.RunEvent:
    msg = parse_message(pb.RunEvent, data)
    _require(msg, ("run_id",), "RunEvent")
    return msg
