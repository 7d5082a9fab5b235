"""The generator's pure logic: replies made fit for a Completion message."""

from __future__ import annotations

import pytest

from trustwatch.generator.backends.base import GenResult
from trustwatch.generator.core import to_completion, utf8_safe
from trustwatch.v1 import messages_pb2 as pb

JOB = pb.PromptJob(ref=pb.JobRef(job_id="r/t/1/0", run_id="r", task="t", item_id="1"), prompt="p")


def test_a_lone_surrogate_in_a_reply_becomes_a_replacement_character() -> None:
    # an endpoint's JSON "odd \ud800 reply" decodes to a str protobuf refuses as UTF-8
    c = to_completion(JOB, GenResult(request_id=JOB.ref.job_id, text="odd \ud800 reply \udfff"))
    assert c.text == "odd \ufffd reply \ufffd"
    assert pb.Completion.FromString(c.SerializeToString()).text == c.text


def test_a_lone_surrogate_in_an_error_or_finish_reason_is_replaced_too() -> None:
    c = to_completion(JOB, GenResult(request_id=JOB.ref.job_id, error="echo \ud83d", finish_reason="x\udc00"))
    assert (c.error, c.finish_reason) == ("echo \ufffd", "x\ufffd")
    c.SerializeToString()


def test_without_the_guard_protobuf_refuses_the_reply() -> None:
    # the failure utf8_safe prevents: what to_completion did before
    with pytest.raises(UnicodeEncodeError):
        pb.Completion(text="odd \ud800")


@pytest.mark.parametrize("text", ["", "plain", "emoji \U0001f600 and accents é", "nul \x00 kept"])
def test_valid_text_is_unchanged(text: str) -> None:
    assert utf8_safe(text) == text


def test_a_cut_reply_keeps_its_original_length() -> None:
    c = to_completion(JOB, GenResult(request_id=JOB.ref.job_id, text="abcdef"), max_reply_chars=4)
    assert (c.text, c.original_chars) == ("abcd", 6)
