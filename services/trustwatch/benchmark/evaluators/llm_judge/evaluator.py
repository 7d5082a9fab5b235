"""The ``llm_judge.<template>`` evaluators: :class:`LlmJudge` (batched, concurrent requests to an
OpenAI-compatible endpoint) and one registered subclass per template (:data:`JUDGES`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from trustwatch.benchmark.evaluators._openai_endpoint import EndpointError, OpenAIEndpoint
from trustwatch.benchmark.evaluators._retry import RetryPolicy
from trustwatch.benchmark.evaluators.base import EvalItem, Evaluator, EvaluatorSettings, Verdict, register
from trustwatch.benchmark.evaluators.llm_judge.prompts import (
    TEMPLATES,
    JudgeTemplate,
    TemplateError,
    verdict_from_reply,
)

log = logging.getLogger(__name__)


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

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> LlmJudge:
        return cls(
            base_url=settings.judge_base_url,
            model=settings.judge_model,
            api_key_env=settings.judge_api_key_env,
            concurrency=settings.judge_concurrency,
            timeout_s=settings.judge_timeout_s,
            max_tokens=settings.judge_max_tokens,
            retry=RetryPolicy(retries=settings.remote_max_retries),
        )

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        spec = TEMPLATES[self.template]
        out: list[Verdict | None] = [None] * len(items)
        prompts: dict[int, str] = {}
        for i, item in enumerate(items):
            try:
                prompts[i] = spec.build(item)
            except TemplateError as exc:
                out[i] = Verdict.failed(f"judge prompt {self.template}: {exc}")
        batch = _Batch()
        if prompts:
            workers = min(self.concurrency, len(prompts))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"judge-{self.template}") as pool:
                futures = {i: pool.submit(self._judge_one, p, batch) for i, p in prompts.items()}
                for i, fut in futures.items():
                    out[i] = fut.result()
        return [v if v is not None else Verdict.failed("judge produced no verdict") for v in out]

    def _judge_one(self, prompt: str, batch: _Batch) -> Verdict:
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
        verdict = verdict_from_reply(self.template, text)
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
