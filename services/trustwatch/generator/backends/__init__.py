"""Generation back-ends. A back-end turns a batch of requests into results, one per request, in
order, never raising for a single request's failure (the result carries the error instead).

Back-ends register by name (:data:`BACKENDS`) and are built by :func:`backend_for` from a target;
each module imports its heavy library (vllm, openai) lazily so the rest of trustwatch runs without them.
"""

from __future__ import annotations

from typing import Any

from trustwatch.generator.backends.base import BACKENDS, Backend, GenRequest, GenResult, create, register
from trustwatch.platform.targets import TargetSpec

__all__ = ["BACKENDS", "Backend", "GenRequest", "GenResult", "backend_for", "create", "register"]


def backend_for(target: TargetSpec, **options: Any) -> Backend:
    """The back-end a target names; each back-end takes the ``options`` that apply to it."""
    return BACKENDS.get(target.backend).from_target(target, **options)
