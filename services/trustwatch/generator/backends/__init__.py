"""Generation back-ends. A back-end turns a batch of requests into results, one per request, in
order, never raising for a single request's failure (the result carries the error instead).

Back-ends are created by :func:`create` from a target; each module imports its heavy library
(vllm, openai) lazily so the rest of trustwatch runs without them.
"""

from __future__ import annotations

from typing import Any

from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, create
from trustwatch.platform.targets import TargetSpec

__all__ = ["Backend", "GenRequest", "GenResult", "backend_for", "create"]


def backend_for(target: TargetSpec, max_model_len: int | None = None, concurrency: int | None = None) -> Backend:
    """The back-end a target names, with the options that apply to it (the others are ignored)."""
    options: dict[str, Any] = {}
    model = target.model
    if target.backend == "vllm":
        from trustwatch.generator.tiny_model import resolve_model

        model = resolve_model(model)
        if max_model_len:
            options["max_model_len"] = max_model_len
    elif concurrency:
        options["concurrency"] = concurrency
    return create(target.backend, model, base_url=target.base_url, api_key_env=target.api_key_env, **options)
