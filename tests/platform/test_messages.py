"""Message identity: one JobRef per job, copied whole by each hop, and messages written before JobRef
(flat identity fields, trustwatch 0.1) still read."""

from __future__ import annotations

import pytest

from trustwatch.benchmark.evaluators.base import Verdict
from trustwatch.generator.backends.base import GenResult
from trustwatch.generator.core import to_completion
from trustwatch.judge.dispatcher import judgment
from trustwatch.platform.messages import (
    InvalidMessage,
    decode_completion,
    decode_job,
    decode_judgment,
    job_id,
    job_ref,
)
from trustwatch.v1 import messages_pb2 as pb

REF = job_ref("r1", "safety/misuse", "7", 2, "m")


def test_job_ref_names_the_job_with_its_deterministic_id() -> None:
    assert REF.job_id == job_id("r1", "safety/misuse", "7", 2) == "r1/safety/misuse/7/2"
    assert (REF.run_id, REF.task, REF.item_id, REF.sample, REF.target) == ("r1", "safety/misuse", "7", 2, "m")


def test_the_ref_travels_unchanged_from_job_to_completion_to_judgment() -> None:
    job = pb.PromptJob(ref=REF, prompt="p", target=pb.Target(name="m"), record_json='{"a":1}')
    completion = to_completion(job, GenResult(request_id=REF.job_id, text="no"))
    verdict = judgment(completion, "refusal", Verdict(label="refusal"))
    assert decode_job(job.SerializeToString()).ref == REF
    assert decode_completion(completion.SerializeToString()).ref == REF
    assert decode_judgment(verdict.SerializeToString()).ref == REF


def _legacy_fields(target: bool = True) -> dict[str, object]:
    fields: dict[str, object] = dict(
        legacy_job_id=REF.job_id,
        legacy_run_id=REF.run_id,
        legacy_task=REF.task,
        legacy_item_id=REF.item_id,
        legacy_sample=REF.sample,
    )
    if target:
        fields["legacy_target"] = REF.target
    return fields


def test_messages_written_before_job_ref_are_read_with_their_identity_in_ref() -> None:
    # The same field numbers a 0.1 producer wrote; decoding moves them into ref and clears them.
    old_job = pb.PromptJob(prompt="p", target=pb.Target(name="m"), **_legacy_fields(target=False))
    old_completion = pb.Completion(text="no", **_legacy_fields())
    old_judgment = pb.Judgment(evaluator="refusal", **_legacy_fields())
    job = decode_job(old_job.SerializeToString())
    completion = decode_completion(old_completion.SerializeToString())
    judged = decode_judgment(old_judgment.SerializeToString())
    for msg in (job, completion, judged):
        assert msg.ref == REF
        assert not msg.legacy_job_id and not msg.legacy_run_id
    assert judged.evaluator == "refusal" and completion.text == "no"


def test_a_message_with_a_ref_keeps_it_over_stray_legacy_fields() -> None:
    msg = pb.Completion(ref=REF, **_legacy_fields())
    msg.legacy_job_id = "other/x/0/0"
    assert decode_completion(msg.SerializeToString()).ref == REF


def test_a_message_without_identity_is_refused_with_the_missing_field_named() -> None:
    with pytest.raises(InvalidMessage, match=r"Completion lacks required field\(s\): ref.job_id, ref.run_id, ref.task"):
        decode_completion(pb.Completion(text="no").SerializeToString())
