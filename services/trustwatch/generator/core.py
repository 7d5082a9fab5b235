"""Pure logic of the generator: jobs to back-end requests, results to completions.

A completion carries its error's kind (``error_kind``, see ``backends/_kinds.py``), and a reply
longer than ``max_reply_chars`` is cut to that many characters, its original length kept in
``original_chars``: a reply is never bigger than a message may be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trustwatch.generator.backends._kinds import error_kind_of
from trustwatch.generator.backends.base import Backend, GenRequest, GenResult
from trustwatch.platform.messages import now_ms
from trustwatch.v1 import messages_pb2 as pb


def to_request(job: pb.PromptJob) -> GenRequest:
    s = job.sampling
    return GenRequest(
        request_id=job.ref.job_id,
        prompt=job.prompt,
        temperature=s.temperature,
        max_tokens=s.max_tokens or 512,
        top_p=s.top_p or 1.0,
        seed=s.seed or None,
    )


#: A lone UTF-16 surrogate: an endpoint's JSON may carry one as a ``\\ud800`` escape, which decodes to a
#: str that is no valid UTF-8, so protobuf refuses it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_safe(text: str) -> str:
    """``text`` as a protobuf string field takes it: every lone surrogate becomes U+FFFD. Without this
    one odd reply would fail its completion on every attempt (the same reply each time at
    temperature 0), and the job would never finish."""
    return _SURROGATE.sub("\ufffd", text)


def cut_reply(text: str, max_chars: int | None) -> tuple[str, int]:
    """``text`` cut to ``max_chars`` characters (None or 0: no limit), and its original length when
    it was cut (0 when it was not)."""
    if max_chars and len(text) > max_chars:
        return text[:max_chars], len(text)
    return text, 0


def to_completion(job: pb.PromptJob, result: GenResult, max_reply_chars: int | None = None) -> pb.Completion:
    text, original_chars = cut_reply(utf8_safe(result.text) if not result.error else "", max_reply_chars)
    return pb.Completion(
        ref=job.ref,
        prompt=job.prompt,
        text=text,
        original_chars=original_chars,
        error=utf8_safe(result.error),
        error_kind=error_kind_of(result),  # type: ignore[arg-type]  # protobuf enum fields take plain ints
        finish_reason=utf8_safe(result.finish_reason),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_s=result.latency_s,
        record_json=job.record_json,
        created_unix_ms=now_ms(),
    )


def generate(backend: Backend, jobs: Sequence[pb.PromptJob], max_reply_chars: int | None = None) -> list[pb.Completion]:
    """Every job gets exactly one completion; a back-end failure becomes the completion's error
    (transient: the back-end's fault, not the model's). Replies are cut to ``max_reply_chars``."""
    if not jobs:
        return []
    try:
        results = backend.generate([to_request(j) for j in jobs])
        if len(results) != len(jobs):
            raise RuntimeError(f"back-end returned {len(results)} results for {len(jobs)} requests")
    except Exception as exc:  # noqa: BLE001 - a back-end crash must not become a gap
        results = [
            GenResult(request_id=j.ref.job_id, error=f"back-end failed: {type(exc).__name__}: {exc}") for j in jobs
        ]
    return [to_completion(j, r, max_reply_chars) for j, r in zip(jobs, results)]
