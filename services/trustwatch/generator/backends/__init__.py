"""Generation back-ends. A back-end turns a batch of requests into results, one per request, in
order, never raising for a single request's failure (the result carries the error instead).

Back-ends are created by :func:`create` from a target; each module imports its heavy library
(vllm, openai) lazily so the rest of trustwatch runs without them.
"""

from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, create

__all__ = ["Backend", "GenRequest", "GenResult", "create"]
