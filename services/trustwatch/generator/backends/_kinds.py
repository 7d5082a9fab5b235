"""How a back-end says what kind of failure a result's error is (``ErrorKind`` in messages.proto).

``GenResult`` (base.py) has no kind of its own, so a back-end that classifies its failures returns
a :class:`ClassifiedResult`: a ``GenResult`` with ``error_kind``. :func:`error_kind_of` reads the
kind of any result; the generator puts it on the Completion.

* ``ERROR_KIND_TRANSIENT``: the endpoint or the engine failed, not the model (transport, HTTP 5xx,
  408, 429, timeouts, a reply that is not JSON, an engine crash). A later success replaces it, and
  re-running the run retries it.
* ``ERROR_KIND_FINAL``: the failure belongs to the model and the prompt (a prompt longer than the
  window, the API's content filter, any other HTTP 4xx). Never retried.

A result with an error but no kind (a back-end that does not classify) counts as transient: a
retry costs one request, while a wrong final error would be a wrong result for good.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustwatch.generator.backends.base import GenResult
from trustwatch.v1 import messages_pb2 as pb

TRANSIENT = pb.ERROR_KIND_TRANSIENT
FINAL = pb.ERROR_KIND_FINAL


@dataclass(frozen=True)
class ClassifiedResult(GenResult):
    error_kind: int = pb.ERROR_KIND_UNSPECIFIED


def failed(request_id: str, error: str, kind: int, **fields: object) -> GenResult:
    """An error result of the given kind."""
    return ClassifiedResult(request_id, error=error, error_kind=kind, **fields)  # type: ignore[arg-type]  # **fields are GenResult fields


def error_kind_of(result: GenResult) -> int:
    """The kind of a result's error: UNSPECIFIED when it has none, TRANSIENT when unclassified."""
    if not result.error:
        return pb.ERROR_KIND_UNSPECIFIED
    kind = int(getattr(result, "error_kind", pb.ERROR_KIND_UNSPECIFIED) or pb.ERROR_KIND_UNSPECIFIED)
    return kind or pb.ERROR_KIND_TRANSIENT
