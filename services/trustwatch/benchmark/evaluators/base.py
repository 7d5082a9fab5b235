"""The evaluator contract and its registry."""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from trustwatch.benchmark.evaluators._settings import (
    JUDGE_SETS,
    EvaluatorSettings,
    JudgeSet,
    LocalModelSettings,
    RemoteSettings,
    SettingsError,
    settings_from_env,
    with_judge_set,
)
from trustwatch.platform.registry import Registry

__all__ = [
    "EVALUATORS",
    "JUDGE_SETS",
    "EvalItem",
    "Evaluator",
    "EvaluatorSettings",
    "JudgeSet",
    "LocalModelSettings",
    "RemoteSettings",
    "SettingsError",
    "UnknownEvaluator",
    "Verdict",
    "create",
    "endpoint_host",
    "evaluate_items",
    "file_digest",
    "judge_identity",
    "judges_identity",
    "known",
    "register",
    "settings_from_env",
    "with_judge_set",
]


@dataclass(frozen=True)
class EvalItem:
    """One reply to judge, with the dataset record it answers (gold labels live there)."""

    job_id: str
    task: str
    prompt: str
    response: str
    record: Mapping[str, Any] = field(default_factory=dict)
    generation_error: str = ""
    #: ``record`` as the JSON the job carried it in, when it came so: the gRPC client sends this text
    #: instead of encoding ``record`` again ("": encode ``record``). Must be ``record``'s JSON.
    record_json: str = ""


@dataclass(frozen=True)
class Verdict:
    """An evaluator's judgement of one reply.

    ``valid`` is False when the reply could not be turned into a verdict (gibberish, no keyword):
    such items stay in the results and each metric says how it treats them. ``error`` is set when
    no judgement could be made at all (generation failed, judge endpoint down).
    """

    label: str
    valid: bool = True
    score: float = math.nan
    error: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: ``detail`` as the JSON a remote judge sent it in, so the judgment carries that text instead of
    #: encoding ``detail`` again ("": encode ``detail``). Must be ``detail``'s JSON.
    detail_json: str = ""

    @classmethod
    def failed(cls, error: str) -> Verdict:
        return cls(label="error", valid=False, error=error)

    def detail_as_json(self) -> str:
        """``detail`` as JSON ("" when empty): the text it came in, else encoded once here."""
        if self.detail_json or not self.detail:
            return self.detail_json
        return json.dumps(dict(self.detail), ensure_ascii=False)


class Evaluator(abc.ABC):
    """A judge. Subclasses set ``name`` and ``description`` and implement :meth:`evaluate`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: True when the evaluator needs no external model or service.
    offline: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> Evaluator:
        """This evaluator, built from its own settings family (``settings.of(...)``)."""
        return cls()

    @classmethod
    def identity(cls, settings: EvaluatorSettings) -> dict[str, str]:
        """What decides how this evaluator judges under ``settings`` (see :func:`judge_identity`):
        back-end, model, template set, endpoint host; never a key or the variable holding it."""
        return {"backend": "rules", "module": cls.__module__.rsplit(".", 1)[-1]}

    @abc.abstractmethod
    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        """Judge a batch; one verdict per item, in order. Items never carry a generation error."""


class UnknownEvaluator(LookupError):
    pass


#: Every evaluator: a module (or package) in this package with an :class:`Evaluator` subclass decorated
#: with :func:`register`. Modules are imported on first use, so heavy back-ends import lazily.
EVALUATORS: Registry[type[Evaluator]] = Registry(
    "evaluator", "trustwatch.benchmark.evaluators", lambda cls: cls.name, unknown=UnknownEvaluator
)
E = TypeVar("E", bound=type[Evaluator])


def register(cls: E) -> E:
    """Class decorator: make an evaluator available by its ``name``."""
    return EVALUATORS.add(cls)


def known() -> dict[str, type[Evaluator]]:
    return EVALUATORS.known()


def create(name: str, settings: EvaluatorSettings | None = None) -> Evaluator:
    return EVALUATORS.get(name).from_settings(settings or EvaluatorSettings())


def evaluate_items(evaluator: Evaluator, items: Sequence[EvalItem]) -> list[Verdict]:
    """Run an evaluator over a batch, so that no item is lost.

    Items whose generation failed get an error verdict without being judged (its error is the
    generation's, which the judgment also carries in ``generation_error``); if the evaluator raises,
    every item of the batch gets an error verdict naming the exception (and the caller carries on).
    """
    out: list[Verdict | None] = [None] * len(items)
    todo: list[int] = []
    for i, item in enumerate(items):
        if item.generation_error:
            out[i] = Verdict.failed(item.generation_error)
        else:
            todo.append(i)
    if todo:
        try:
            verdicts = evaluator.evaluate([items[i] for i in todo])
            if len(verdicts) != len(todo):
                raise RuntimeError(f"returned {len(verdicts)} verdicts for {len(todo)} items")
        except Exception as exc:  # noqa: BLE001 - the batch is reported, never dropped
            verdicts = [Verdict.failed(f"evaluator {evaluator.name} failed: {type(exc).__name__}: {exc}")] * len(todo)
        for i, v in zip(todo, verdicts):
            out[i] = v
    return [v for v in out if v is not None]


def endpoint_host(url: str) -> str:
    """The host (and port) of an endpoint URL: never its user info, path or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return ""


def file_digest(module: str) -> str:
    """Short sha256 of a module's source file: the identity of a set of prompt templates."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    if not origin:
        return ""
    with open(origin, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()[:16]


def judge_identity(name: str, settings: EvaluatorSettings, offline_only: bool = False) -> dict[str, str]:
    """What decides how evaluator ``name`` judges: its back-end, model, template set and endpoint host
    (each evaluator's :meth:`Evaluator.identity`; an evaluator that hands items to an LLM judge, its
    ``judge_name``, is identified by that judge, with ``rule`` naming it).

    Only names and host names, never a key or the variable holding it, nor a URL's path or query:
    the result goes into run manifests (its hash is the manifest's ``judges_hash``: keep it stable).
    ``offline_only``: the run judges with offline evaluators only (``trustwatch run --offline``), so
    evaluators needing an external model give "not judged".
    """
    cls = EVALUATORS.get(name)
    judge_name: str = getattr(cls, "judge_name", "") or (name if name.startswith("llm_judge.") else "")
    out: dict[str, str] = {}
    if judge_name and judge_name != name:
        out["rule"] = name
    if offline_only and not cls.offline and not judge_name:
        out["backend"] = "not-judged-offline"
        return out
    if judge_name:
        if offline_only:
            out.update(backend="not-judged-offline", template=judge_name)
            return out
        out.update(EVALUATORS.get(judge_name).identity(settings))
    else:
        out.update(cls.identity(settings))
    return out


def judges_identity(
    names: Iterable[str], settings: EvaluatorSettings, offline_only: bool = False
) -> dict[str, dict[str, str]]:
    """:func:`judge_identity` of each evaluator, by name (sorted)."""
    return {n: judge_identity(n, settings, offline_only) for n in sorted(set(names))}
