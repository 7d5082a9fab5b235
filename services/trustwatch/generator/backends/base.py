"""The back-end contract."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from trustwatch.platform.registry import Registry
from trustwatch.platform.targets import TargetSpec


@dataclass(frozen=True)
class GenRequest:
    request_id: str
    prompt: str  # sent verbatim as the single user turn
    temperature: float
    max_tokens: int
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenResult:
    request_id: str
    text: str = ""
    error: str = ""  # set when no reply could be had; text is then empty
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


class Stream(abc.ABC):
    """A back-end in streaming mode: requests go in one at a time while there is room, and results
    come out as each one finishes, in any order, so the back-end never waits for a batch's slowest
    reply. The caller (the generator's transport loop) keeps at most :attr:`capacity` requests in
    flight and calls :meth:`results` to collect what has finished.

    Thread-safety: :meth:`submit`, :meth:`results` and :meth:`close` are called from one thread (the
    caller's); the stream may finish requests on threads or an event loop of its own.
    """

    #: Most requests in flight at once; :meth:`submit` beyond it raises RuntimeError.
    capacity: int

    @abc.abstractmethod
    def submit(self, request: GenRequest) -> None:
        """Start one request and return at once (never waits for its reply). A request that fails
        later yields a result with ``error``; submit itself raises only on misuse (closed stream,
        ``capacity`` exceeded)."""

    @abc.abstractmethod
    def results(self, timeout: float = 0.0) -> list[GenResult]:
        """Every result finished since the last call, in finishing order. When none is ready, waits
        up to ``timeout`` seconds for the first one (0: do not wait)."""

    @property
    @abc.abstractmethod
    def in_flight(self) -> int:
        """Requests submitted whose results have not yet been returned by :meth:`results`."""

    def close(self) -> None:
        """Stop: requests still in flight are abandoned (their jobs are not committed, so they are
        delivered again). The back-end itself stays open."""
        return None


class Backend(abc.ABC):
    #: The back-end name a target starts with (``vllm:...``, ``openai:...``).
    name: ClassVar[str]
    #: How many requests the generator service should hand over at once.
    preferred_batch: int = 64

    @classmethod
    def from_target(cls, target: TargetSpec, **options: Any) -> Backend:
        """Build the back-end for a target. ``options`` are the generation settings given on the
        command line (e.g. ``max_model_len``, ``concurrency``): take those that apply, ignore the rest.
        Raise ValueError naming the fix for a bad target. Every registered back-end overrides this."""
        raise TypeError(f"{cls.__name__} cannot be built from a target")

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """One result per request, in order. A failing request yields a result with ``error``."""

    def stream(self) -> Stream:
        """This back-end in streaming mode (see :class:`Stream`). Back-ends that can keep requests in
        flight natively (an event loop, an engine with continuous batching) override this."""
        raise NotImplementedError(f"{type(self).__name__} has no streaming mode")

    def close(self) -> None:
        return None


class UnknownBackend(ValueError, LookupError):
    """A target names a back-end that does not exist."""


#: Every back-end: a module in this package with a :class:`Backend` subclass decorated with
#: :func:`register`. Each module imports its heavy library (vllm, openai) lazily.
BACKENDS: Registry[type[Backend]] = Registry(
    "generation back-end", "trustwatch.generator.backends", lambda cls: cls.name, unknown=UnknownBackend
)
B = TypeVar("B", bound=type[Backend])


def register(cls: B) -> B:
    """Class decorator: make a back-end available by its ``name``."""
    return BACKENDS.add(cls)


def create(backend: str, model: str, base_url: str = "", api_key_env: str = "", **options: Any) -> Backend:
    """Build a back-end by name (see :meth:`Backend.from_target`)."""
    target = TargetSpec(name=model, backend=backend, model=model, base_url=base_url, api_key_env=api_key_env)
    return BACKENDS.get(backend).from_target(target, **options)
