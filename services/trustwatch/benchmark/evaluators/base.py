"""The evaluator contract and its registry."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from trustwatch.platform import config
from trustwatch.platform.registry import Registry


@dataclass(frozen=True)
class EvalItem:
    """One reply to judge, with the dataset record it answers (gold labels live there)."""

    job_id: str
    task: str
    prompt: str
    response: str
    record: Mapping[str, Any] = field(default_factory=dict)
    generation_error: str = ""


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

    @classmethod
    def failed(cls, error: str) -> Verdict:
        return cls(label="error", valid=False, error=error)


@dataclass(frozen=True)
class EvaluatorSettings:
    """Settings evaluators may need, read once by the service that hosts them."""

    refusal_backend: str = "phrases"
    refusal_model: str = "LibrAI/longformer-harmful-ro"
    batch_size: int = 32
    device: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    # LLM-as-judge (llm_judge.*): any OpenAI-compatible chat endpoint; the key is read from the
    # environment variable named here, never stored in settings.
    judge_base_url: str = "https://api.openai.com/v1"
    judge_model: str = "gpt-4-1106-preview"
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_concurrency: int = 4
    judge_timeout_s: float = 60.0
    judge_max_tokens: int = 64
    # Embeddings (embedding, persona_similarity): "local" sentence-transformers model or "openai" API.
    embedding_backend: str = "local"
    embedding_model: str = ""  # empty: packaged all-MiniLM-L6-v2 (local) / text-embedding-ada-002 (openai)
    embedding_base_url: str = "https://api.openai.com/v1"
    embedding_api_key_env: str = "OPENAI_API_KEY"
    # Toxicity: "hf" classifier or "perspective" API; empty backend: hf when a model is set.
    toxicity_backend: str = ""
    toxicity_model: str = ""
    toxicity_label: str = "toxic"
    perspective_api_key_env: str = "PERSPECTIVE_API_KEY"
    perspective_url: str = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
    perspective_qps: float = 1.0
    # Every remote call (judge, embedding API, Perspective): retries after the first attempt, and
    # the per-request timeout of the embedding API and Perspective.
    remote_max_retries: int = 4
    remote_timeout_s: float = 60.0
    # Judge set: "default" (trustwatch's judges) or "reference" (the reference toolkit's: its GPT judge
    # templates read at run time from ``reference_templates`` or the installed trustllm package, pair-mode
    # sycophancy preference, and the REFERENCE_JUDGE_SET defaults below).
    judges: str = "default"
    reference_templates: str = ""


#: The judge sets ``settings.judges`` may name.
JUDGE_SETS = ("default", "reference")
#: What the ``reference`` judge set changes, where the field is not set explicitly (variable or flag):
#: the reference's Longformer refusal classifier, its OpenAI ada-002 embeddings (any OpenAI-compatible
#: /embeddings endpoint), its GPT-4 judge with no reply-length cap.
REFERENCE_JUDGE_SET: dict[str, Any] = {
    "refusal_backend": "hf",
    "refusal_model": "LibrAI/longformer-harmful-ro",
    "embedding_backend": "openai",
    "embedding_model": "text-embedding-ada-002",
    "judge_model": "gpt-4-1106-preview",
    "judge_max_tokens": 0,
}


class SettingsError(ValueError):
    """An evaluator setting whose value cannot be used; the message names the variable."""


def settings_from_env(**overrides: Any) -> EvaluatorSettings:
    """Evaluator settings, each field from its declared TRUSTWATCH_<FIELD> variable; ``overrides``
    (e.g. command-line flags) win where they are not None or empty."""
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for f in dataclasses.fields(EvaluatorSettings):
        var = f"TRUSTWATCH_{f.name.upper()}"
        if var in config.VARIABLES and f.name != "extra":
            raw = config.env(var)
            if config.is_set(var):
                explicit.add(f.name)
            kind = type(f.default)
            try:
                values[f.name] = kind(raw) if kind in (int, float) else raw
            except ValueError:
                raise SettingsError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    given = {k: v for k, v in overrides.items() if v}
    values.update(given)
    explicit |= set(given)
    return with_judge_set(EvaluatorSettings(**values), explicit)


def with_judge_set(settings: EvaluatorSettings, explicit: Iterable[str] = ()) -> EvaluatorSettings:
    """``settings`` with its judge set's defaults applied to every field not in ``explicit``."""
    if settings.judges not in JUDGE_SETS:
        raise SettingsError(f"TRUSTWATCH_JUDGES={settings.judges!r}: use one of {', '.join(JUDGE_SETS)}")
    if settings.judges != "reference":
        return settings
    keep = set(explicit)
    return dataclasses.replace(settings, **{k: v for k, v in REFERENCE_JUDGE_SET.items() if k not in keep})


class Evaluator(abc.ABC):
    """A judge. Subclasses set ``name`` and ``description`` and implement :meth:`evaluate`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: True when the evaluator needs no external model or service.
    offline: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> Evaluator:
        return cls()

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

    Items whose generation failed get an error verdict without being judged; if the evaluator raises,
    every item of the batch gets an error verdict naming the exception (and the caller carries on).
    """
    out: list[Verdict | None] = [None] * len(items)
    todo: list[int] = []
    for i, item in enumerate(items):
        if item.generation_error:
            out[i] = Verdict.failed(f"generation failed: {item.generation_error}")
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


def _host(url: str) -> str:
    """The host (and port) of an endpoint URL: never its user info, path or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return ""


def _file_digest(module: str) -> str:
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
    """What decides how evaluator ``name`` judges: its back-end, model, template set and endpoint host.

    Only names and host names, never a key or the variable holding it, nor a URL's path or query:
    the result goes into run manifests. ``offline_only``: the run judges with offline evaluators only
    (``trustwatch run --offline``), so evaluators needing an external model give "not judged".
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
        out.update(
            backend="openai-compatible-chat",
            model=settings.judge_model,
            template=judge_name,
            template_set=_file_digest("trustwatch.benchmark.evaluators.llm_judge.prompts"),
            endpoint_host=_host(settings.judge_base_url),
        )
        if settings.judges == "reference":
            out.update(_reference_template_identity(judge_name.removeprefix("llm_judge."), settings))
    elif name == "refusal":
        out.update(backend=settings.refusal_backend)
        if settings.refusal_backend == "hf":
            out["model"] = settings.refusal_model
        else:
            out["template_set"] = _file_digest("trustwatch.benchmark.evaluators.refusal.rules")
            if settings.refusal_backend == "learned":  # the shipped n-gram model, by content
                from trustwatch.benchmark.evaluators.refusal.learned import artifact_digest

                out["model"] = artifact_digest()
    elif name in ("embedding", "persona_similarity"):
        out.update(backend=settings.embedding_backend, model=settings.embedding_model or "default")
        if settings.embedding_backend == "openai":
            out["endpoint_host"] = _host(settings.embedding_base_url)
    elif name == "toxicity":
        backend = settings.toxicity_backend or ("hf" if settings.toxicity_model else "perspective")
        out.update(backend=backend)
        if backend == "hf":
            out.update(model=settings.toxicity_model, label=settings.toxicity_label)
        else:
            out.update(model="perspective:TOXICITY", endpoint_host=_host(settings.perspective_url))
    else:
        out.update(backend="rules", module=cls.__module__.rsplit(".", 1)[-1])
    return out


def _reference_template_identity(template: str, settings: EvaluatorSettings) -> dict[str, str]:
    """Identity of a reference judge template: where it was loaded from, its digest, whether it is the
    reference's own (by digest), and the reply cap sent. Raises when the templates are unavailable."""
    from trustwatch.benchmark.evaluators.llm_judge import reference as ref

    use = ref.USES.get(template)
    if use is None:
        return {"template_set": "reference:none", "max_tokens": str(settings.judge_max_tokens)}
    templates = ref.load_reference_templates(settings.reference_templates)
    out = {
        "template_set": f"reference:sha256:{templates.digest(use.key)}",
        "template_source": templates.source,
        "template_matches_reference": "yes" if templates.is_reference(use.key) else "no",
        "max_tokens": str(settings.judge_max_tokens),
    }
    if use.mode == ref.PAIR:
        out["mode"] = "pair"
    return out


def judges_identity(
    names: Iterable[str], settings: EvaluatorSettings, offline_only: bool = False
) -> dict[str, dict[str, str]]:
    """:func:`judge_identity` of each evaluator, by name (sorted)."""
    return {n: judge_identity(n, settings, offline_only) for n in sorted(set(names))}
