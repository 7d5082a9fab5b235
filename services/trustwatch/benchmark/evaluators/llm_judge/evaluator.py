"""The ``llm_judge.<template>`` evaluators: :class:`LlmJudge` (batched, concurrent requests to an
OpenAI-compatible endpoint) and one registered subclass per template (:data:`JUDGES`).

Settings: :class:`JudgeSettings` (endpoint, model, concurrency, ...), :class:`RemoteSettings` (retries)
and the judge set (:class:`JudgeSet`).

Judge sets. With ``TRUSTWATCH_JUDGES=default`` the prompts are trustwatch's own (:mod:`.prompts`).
With ``"reference"`` they are the reference toolkit's templates, loaded at run time (:mod:`.reference`),
and ``sycophancy_preference`` runs in *pair mode*, as the reference does: the two replies of a mirrored
prompt pair ("I prefer X to Y" / "I prefer Y to X", adjacent records of one run and sample) go into ONE
judge request, which asks whether they state the same preference. Pairs are formed within a batch, and
across batches through a bounded memory of unpaired replies (:data:`PAIR_MEMORY`): the half that
completes a pair carries the pair's verdict (``detail["mode"] == "pair"``, ``detail["raw"]``), the half
seen first gets ``Verdict("pair_pending", detail={"mode": "pair", "pending": True})``. A pair whose
halves go to different processes is never judged; the metric counts it as an error.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from trustwatch.benchmark.evaluators._openai_endpoint import EndpointError, OpenAIEndpoint
from trustwatch.benchmark.evaluators._retry import RetryPolicy
from trustwatch.benchmark.evaluators._settings import family, var
from trustwatch.benchmark.evaluators.base import (
    EvalItem,
    Evaluator,
    EvaluatorSettings,
    JudgeSet,
    RemoteSettings,
    Verdict,
    endpoint_host,
    file_digest,
    register,
)
from trustwatch.benchmark.evaluators.llm_judge import reference as ref
from trustwatch.benchmark.evaluators.llm_judge.parsing import UNPARSEABLE, YES_NO
from trustwatch.benchmark.evaluators.llm_judge.prompts import (
    TEMPLATES,
    JudgeTemplate,
    TemplateError,
    preference_options,
    verdict_from_reply,
)

log = logging.getLogger(__name__)

#: Pair mode: at most this many replies wait for their partner (oldest dropped first).
PAIR_MEMORY = 4096
PAIR_PENDING = "pair_pending"


@family
@dataclass(frozen=True)
class JudgeSettings:
    """The ``llm_judge.*`` evaluators' settings: any OpenAI-compatible chat endpoint; the key is read
    from the variable named by ``api_key_env``, never stored in settings. ``reference_templates``: the
    ``reference`` judge set's template file (empty: the installed trustllm package's)."""

    base_url: str = var("TRUSTWATCH_JUDGE_BASE_URL", str)
    model: str = var("TRUSTWATCH_JUDGE_MODEL", str)
    api_key_env: str = var("TRUSTWATCH_JUDGE_API_KEY_ENV", str)
    concurrency: int = var("TRUSTWATCH_JUDGE_CONCURRENCY", int)
    timeout_s: float = var("TRUSTWATCH_JUDGE_TIMEOUT_S", float)
    max_tokens: int = var("TRUSTWATCH_JUDGE_MAX_TOKENS", int)
    reference_templates: str = var("TRUSTWATCH_REFERENCE_TEMPLATES", str)

    #: The reference judge set: its GPT-4 judge, with no reply-length cap.
    reference_set: ClassVar[Mapping[str, Any]] = {"model": "gpt-4-1106-preview", "max_tokens": 0}


@dataclass
class JudgeStats:
    """Counters of one evaluator instance (all batches): HTTP attempts, retries, high-water mark of
    requests in flight. For tests and logs."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def failed(self) -> None:
        with self._lock:
            self.failures += 1


class _Batch:
    """State shared by the workers of one batch: once the endpoint is known to be unreachable, the
    remaining items fail with the same message instead of each spending its retries."""

    def __init__(self) -> None:
        self.down: str | None = None


class LlmJudge(Evaluator):
    """Base of the ``llm_judge.<template>`` evaluators; subclasses only name their template."""

    template: ClassVar[str]
    offline = False

    def __init__(
        self,
        base_url: str = "https://api.openai.com/v1",
        model: str = "gpt-4-1106-preview",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout_s: float = 60.0,
        max_tokens: int = 64,
        retry: RetryPolicy | None = None,
        reference: ref.ReferenceTemplates | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"judge concurrency must be at least 1, got {concurrency}")
        if not model:
            raise ValueError("judge model is empty; set TRUSTWATCH_JUDGE_MODEL")
        self.model = model
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.endpoint = OpenAIEndpoint("judge endpoint", base_url, api_key_env, timeout_s, retry or RetryPolicy())
        self.stats = JudgeStats()
        #: the reference's templates (judge set ``reference``); None: trustwatch's own prompts
        self.reference = reference
        if reference is not None:
            if self.template not in ref.USES:
                raise ValueError(f"the reference toolkit has no judge template for {self.template!r}")
            reference.entry(ref.USES[self.template].key)  # fail now, with the how-to, if it is missing
        self._unpaired: OrderedDict[tuple[str, str, tuple[str, ...]], tuple[int, str]] = OrderedDict()
        self._pair_lock = threading.Lock()

    @property
    def pair_mode(self) -> bool:
        return self.reference is not None and ref.USES[self.template].mode == ref.PAIR

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> LlmJudge:
        own = settings.of(JudgeSettings)
        return cls(
            base_url=own.base_url,
            model=own.model,
            api_key_env=own.api_key_env,
            concurrency=own.concurrency,
            timeout_s=own.timeout_s,
            max_tokens=own.max_tokens,
            retry=RetryPolicy(retries=settings.of(RemoteSettings).max_retries),
            reference=ref.load_reference_templates(own.reference_templates)
            if settings.of(JudgeSet).judges == "reference"
            else None,
        )

    @classmethod
    def identity(cls, settings: EvaluatorSettings) -> dict[str, str]:
        own = settings.of(JudgeSettings)
        out = {
            "backend": "openai-compatible-chat",
            "model": own.model,
            "template": cls.name,
            "template_set": file_digest("trustwatch.benchmark.evaluators.llm_judge.prompts"),
            "endpoint_host": endpoint_host(own.base_url),
        }
        if settings.of(JudgeSet).judges == "reference":
            out.update(_reference_template_identity(cls.template, own))
        return out

    def _build(self, item: EvalItem) -> str:
        if self.reference is not None:
            return ref.build(self.reference, self.template, item)
        return TEMPLATES[self.template].build(item)

    def _read(self, text: str) -> Verdict:
        return verdict_from_reply(self.template, text)

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        if self.pair_mode:
            return self._evaluate_pairs(items)
        out: list[Verdict | None] = [None] * len(items)
        prompts: dict[int, str] = {}
        for i, item in enumerate(items):
            try:
                prompts[i] = self._build(item)
            except (TemplateError, ref.TemplateError) as exc:
                out[i] = Verdict.failed(f"judge prompt {self.template}: {exc}")
        for i, v in self._ask_all(prompts, self._read).items():
            out[i] = v
        return [v if v is not None else Verdict.failed("judge produced no verdict") for v in out]

    def _ask_all(self, prompts: dict[int, str], read: Callable[[str], Verdict]) -> dict[int, Verdict]:
        batch = _Batch()
        if not prompts:
            return {}
        workers = min(self.concurrency, len(prompts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"judge-{self.template}") as pool:
            futures = {i: pool.submit(self._judge_one, p, batch, read) for i, p in prompts.items()}
            return {i: fut.result() for i, fut in futures.items()}

    # -- pair mode (reference judge set, sycophancy preference) ---------------------------------------

    @staticmethod
    def _pair_key(item: EvalItem) -> tuple[tuple[str, str, tuple[str, ...]], int] | str:
        """(key shared by both halves of a mirrored pair, the item's position), or why there is none."""
        # <run>/<task>/<item>/<sample> (the pipeline's job ids) or <task>/<item> (`trustwatch evaluate`)
        parts = item.job_id.rsplit("/", 2)
        options = preference_options(item.prompt)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            prefix, position, sample = parts
        elif len(parts) >= 2 and parts[-1].isdigit():
            prefix, position, sample = item.job_id.rsplit("/", 1)[0], parts[-1], ""
        else:
            return f"pair mode needs a job id ending in <item>/<sample> or <item>, got {item.job_id!r}"
        if options is None:
            return 'pair mode needs an "I prefer "X" to "Y"" prompt to find the mirrored partner'
        return (prefix, sample, tuple(sorted(options))), int(position)

    def _evaluate_pairs(self, items: Sequence[EvalItem]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(items)
        open_: dict[tuple[str, str, tuple[str, ...]], int] = {}  # key -> index of a half without partner
        pairs: list[tuple[list[int], int, str, int, str]] = []  # (indices, first pos, first reply, second ...)
        pos: dict[int, int] = {}
        for i, item in enumerate(items):
            k = self._pair_key(item)
            if isinstance(k, str):
                out[i] = Verdict.failed(f"judge prompt {self.template}: {k}")
                continue
            key, pos[i] = k
            j = open_.get(key)
            if j is not None and abs(pos[j] - pos[i]) == 1:
                del open_[key]
                a, b = sorted((i, j), key=pos.__getitem__)
                pairs.append(([a, b], pos[a], items[a].response, pos[b], items[b].response))
            else:
                open_[key] = i
        with self._pair_lock:
            for key, i in open_.items():
                seen = self._unpaired.get(key)
                if seen is not None and abs(seen[0] - pos[i]) == 1:
                    del self._unpaired[key]
                    if seen[0] < pos[i]:
                        pairs.append(([i], seen[0], seen[1], pos[i], items[i].response))
                    else:
                        pairs.append(([i], pos[i], items[i].response, seen[0], seen[1]))
                    continue
                self._unpaired[key] = (pos[i], items[i].response)
                self._unpaired.move_to_end(key)
                while len(self._unpaired) > PAIR_MEMORY:
                    self._unpaired.popitem(last=False)
                out[i] = Verdict(PAIR_PENDING, valid=True, detail={"mode": "pair", "pending": True})
        prompts: dict[int, str] = {}
        for n, (_idx, _p1, first, _p2, second) in enumerate(pairs):
            assert self.reference is not None
            try:
                prompts[n] = ref.build_pair(self.reference, self.template, first, second)
            except ref.TemplateError as exc:
                for i in pairs[n][0]:
                    out[i] = Verdict.failed(f"judge prompt {self.template}: {exc}")
        for n, v in self._ask_all(prompts, _read_pair).items():
            idx, p1, _first, p2, _second = pairs[n]
            if not v.error:
                v = Verdict(v.label, v.valid, v.score, v.error, {**v.detail, "mode": "pair", "pair": [p1, p2]})
            for i in idx:
                out[i] = v
        return [v if v is not None else Verdict.failed("judge produced no verdict") for v in out]

    def _judge_one(self, prompt: str, batch: _Batch, read: Callable[[str], Verdict] | None = None) -> Verdict:
        if batch.down is not None:
            self.stats.failed()
            return Verdict.failed(batch.down)
        try:
            text, finish = self.endpoint.call(
                lambda client: self._ask(client, prompt),
                stop=lambda: batch.down is not None,
                on_retry=lambda n, exc, wait: self.stats.retried(),
            )
        except EndpointError as exc:
            self.stats.failed()
            if exc.unreachable and batch.down is None:
                batch.down = str(exc)
                log.warning("%s", exc)
            return Verdict.failed(str(exc))
        verdict = (read or self._read)(text)
        if finish == "length" and not verdict.valid:
            # Tell the reader why a reply may be cut short: max_tokens, not the judge.
            verdict = Verdict(verdict.label, valid=False, detail={**verdict.detail, "finish_reason": finish})
        return verdict

    def _ask(self, client: Any, prompt: str) -> tuple[str, str]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
        }
        if self.max_tokens > 0:
            kwargs["max_tokens"] = self.max_tokens
        self.stats.start()
        try:
            resp = client.chat.completions.create(**kwargs)
        finally:
            self.stats.end()
        if not resp.choices:
            return "", "no choices"
        choice = resp.choices[0]
        return choice.message.content or "", str(choice.finish_reason or "")


def _read_pair(text: str) -> Verdict:
    """A pair judge's answer: YES (same preference, or both neutral) / NO; the raw text is kept."""
    parsed = YES_NO(text)
    if parsed.label is None:
        return Verdict(UNPARSEABLE, valid=False, detail={"raw": text, "reason": parsed.reason})
    return Verdict(parsed.label, valid=True, detail={"raw": text})


def _reference_template_identity(template: str, own: JudgeSettings) -> dict[str, str]:
    """Identity of a reference judge template: where it was loaded from, its digest, whether it is the
    reference's own (by digest), and the reply cap sent. Raises when the templates are unavailable."""
    use = ref.USES.get(template)
    if use is None:
        return {"template_set": "reference:none", "max_tokens": str(own.max_tokens)}
    templates = ref.load_reference_templates(own.reference_templates)
    out = {
        "template_set": f"reference:sha256:{templates.digest(use.key)}",
        "template_source": templates.source,
        "template_matches_reference": "yes" if templates.is_reference(use.key) else "no",
        "max_tokens": str(own.max_tokens),
    }
    if use.mode == ref.PAIR:
        out["mode"] = "pair"
    return out


def _judge_class(template: str, spec: JudgeTemplate) -> type[LlmJudge]:
    cls = type(
        f"LlmJudge_{template}",
        (LlmJudge,),
        {
            "name": f"llm_judge.{template}",
            "template": template,
            "description": f"LLM judge: {spec.description}",
            "__module__": __name__,
            "__doc__": f"LLM-as-judge with the {template!r} template.",
        },
    )
    return register(cls)


JUDGES: dict[str, type[LlmJudge]] = {t: _judge_class(t, spec) for t, spec in TEMPLATES.items()}
