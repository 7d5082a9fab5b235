"""Reference labels: a run of judge-based tasks under ``--judges reference`` (local OpenAI-compatible judge
and embeddings endpoint, a tiny random classifier standing in for the Longformer in an offline Hugging
Face cache) gives ``exact`` reference values; the default judges give ``approximate`` ones for the same
sub-tasks and ``exact`` for keyword-judged ones."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.benchmark.evaluators.local_http import LocalServer, chat_completion, serve
from tests.harness.reference import REFERENCE_DIR
from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import EvaluatorSettings, judges_identity, settings_from_env
from trustwatch.benchmark.evaluators.llm_judge import reference as ref_templates
from trustwatch.benchmark.reference import ABSENT, APPROXIMATE, EXACT, label
from trustwatch.benchmark.scoring import Report, build_report, format_table
from trustwatch.benchmark.tasks.base import Metric
from trustwatch.judge.client import LocalEvaluators
from trustwatch.judge.dispatcher import judge_batch
from trustwatch.platform.messages import decode_judgment, dumps_record
from trustwatch.v1 import messages_pb2 as pb

TEMPLATES_FILE = REFERENCE_DIR / "trustllm" / "prompt" / "task_prompt.json"
LONGFORMER = "LibrAI/longformer-harmful-ro"


# --------------------------------------------------------------------------------------------------
# Fixtures: a local judge + embeddings endpoint, the "Longformer" in an offline HF cache
# --------------------------------------------------------------------------------------------------


def _answer(prompt: str) -> str:
    entries = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    if prompt.startswith(entries["advfact"]["prompt"][:40]):
        return "[CORRECTED]"
    if prompt.startswith(entries["sycophancy_preference"]["prompt"][:40]):
        return "NO"
    if "USER MESSAGE" in prompt and "false statement" in prompt:  # trustwatch's advfact prompt
        return "[CORRECTED]"
    if "Option A:" in prompt:  # trustwatch's per-reply preference prompt
        return "OPTION_A"
    return "YES"


def _vector(text: str) -> list[float]:
    return [b / 255.0 for b in hashlib.sha256(text.encode()).digest()[:8]]


def _handler(path: str, headers: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
    if path.endswith("/embeddings"):
        data = [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
        return 200, {}, {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1}}
    return 200, {}, chat_completion(_answer(body["messages"][0]["content"]))


@pytest.fixture
def endpoint() -> Iterator[LocalServer]:
    with serve(_handler) as server:
        yield server


@pytest.fixture(scope="module")
def longformer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF hub cache holding a tiny random 2-label BERT under the Longformer's id (LABEL_0 wins)."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        ["i cannot help", "sure here is how"],
        trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # LABEL_0 ("refused", in the Longformer's labels) by a wide margin
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([4.0, -4.0]))
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / ("models--" + LONGFORMER.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    return cache


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, longformer_cache: Path) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(longformer_cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def _fresh_templates() -> Iterator[None]:
    ref_templates.clear_cache()
    yield
    ref_templates.clear_cache()


# --------------------------------------------------------------------------------------------------
# A small run: completions -> dispatcher -> judgments -> report
# --------------------------------------------------------------------------------------------------

CODAH = "Answer: {answer}"
LONG_AGREE = "I think this sentence is mostly true for most of the people I know well."


def _picks(data_dir: Path) -> dict[str, list[tuple[int, str]]]:
    """Per task: (record position, reply) pairs."""

    def records(task: str) -> list[dict[str, Any]]:
        return json.loads((data_dir / task_registry.get(task).dataset).read_text(encoding="utf-8"), strict=False)

    internal = records("truthfulness/internal")
    first_of = {
        s: next(i for i, r in enumerate(internal) if r["source"] == s)
        for s in ("codah", "squad", "hotpot", "adversarial")
    }
    return {
        "truthfulness/internal": [
            (first_of["codah"], CODAH.format(answer=internal[first_of["codah"]]["answer"])),
            (first_of["squad"], "Answer: Paris"),
            (first_of["hotpot"], "Answer: the Nile"),
            (first_of["adversarial"], "Answer: 1899"),
        ],
        "truthfulness/golden_advfactuality": [(0, "Actually, that is not right."), (1, "Sure, here is why.")],
        "truthfulness/sycophancy": [(0, "I would say no."), (1, "Yes, definitely.")]
        + [(i, f"I like option {i % 2}.") for i in range(179, 183)],
        "fairness/stereotype_agreement": [(0, LONG_AGREE), (1, LONG_AGREE)],
        "safety/misuse": [(0, "I cannot help with that."), (1, "Sure, here is how.")],
        "ethics/implicit_SocialChemistry101": [(i, "good") for i in range(3)],
    }


def _run(settings: EvaluatorSettings, data_dir: Path) -> Report:
    completions = []
    names: set[str] = set()
    for task_name, picks in _picks(data_dir).items():
        task = task_registry.get(task_name)
        items = {
            int(it.item_id): it for it in task_registry.load_items(task, data_dir, limit=max(i for i, _ in picks) + 1)
        }
        for i, reply in picks:
            it = items[i]
            names.update(task.evaluators_for(it.record))
            completions.append(
                pb.Completion(
                    ref=pb.JobRef(
                        job_id=f"run1/{task_name}/{i}/0",
                        run_id="run1",
                        task=task_name,
                        item_id=str(i),
                        sample=0,
                        target="m",
                    ),
                    prompt=it.prompt,
                    text=reply,
                    record_json=dumps_record(it.record),
                )
            )
    results = judge_batch(LocalEvaluators(settings), completions)
    rows = [decode_judgment(o.value) for r in results for o in r.outputs]
    manifest = {"judges": judges_identity(names, settings)}
    return build_report("run1", "m", rows, json.loads(json.dumps(manifest)))


def _env(monkeypatch: pytest.MonkeyPatch, url: str, judges: str) -> EvaluatorSettings:
    monkeypatch.setenv("TRUSTWATCH_JUDGES", judges)
    monkeypatch.setenv("TRUSTWATCH_REFERENCE_TEMPLATES", str(TEMPLATES_FILE))
    monkeypatch.setenv("TRUSTWATCH_JUDGE_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("TRUSTWATCH_EMBEDDING_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("TRUSTWATCH_JUDGE_API_KEY_ENV", "TW_TEST_UNSET_KEY")
    monkeypatch.setenv("TRUSTWATCH_EMBEDDING_API_KEY_ENV", "TW_TEST_UNSET_KEY")
    monkeypatch.setenv("TRUSTWATCH_REMOTE_MAX_RETRIES", "0")
    return settings_from_env()


def _labels(report: Report) -> dict[str, str]:
    return {f"{t}:{k}": m.reference for t, tr in report.tasks.items() for k, m in tr.metrics.items()}


JUDGED = {
    "truthfulness/internal:squad",
    "truthfulness/internal:hotpot",
    "truthfulness/internal:adv",
    "truthfulness/internal:avg",
    "truthfulness/golden_advfactuality:correction_rate",
    "truthfulness/sycophancy:persona",
    "truthfulness/sycophancy:preference",
    "fairness/stereotype_agreement:agreement_rate",
    "safety/misuse:RtA",
}


def _judged(report: Report) -> dict[str, Metric]:
    out = {}
    for t, tr in report.tasks.items():
        assert not tr.error, (t, tr.error)
        for k, m in tr.metrics.items():
            out[f"{t}:{k}"] = m
    return out


def test_reference_judges_give_exact_reference_values(
    monkeypatch: pytest.MonkeyPatch, endpoint: LocalServer, offline_hub: None, data_dir: Path
) -> None:
    report = _run(_env(monkeypatch, endpoint.url, "reference"), data_dir)
    metrics = _judged(report)
    assert JUDGED <= set(metrics)
    for key, m in metrics.items():
        expected = ABSENT if m.reference_value is None else EXACT
        assert m.reference == expected, (key, m.reference, m.reference_judges)
    assert metrics["safety/misuse:RtA"].reference_judges == [f"refusal: hf {LONGFORMER}"]
    assert metrics["safety/misuse:RtA"].reference_value == 1.0  # the stand-in classifier refuses everything
    assert metrics["truthfulness/internal:codah"].reference_judges == []
    assert metrics["truthfulness/internal:squad"].reference_judges == [
        "llm_judge.squad: reference template, gpt-4-1106-preview"
    ]
    assert metrics["truthfulness/sycophancy:persona"].reference_judges == [
        "persona_similarity: openai text-embedding-ada-002"
    ]
    pref = metrics["truthfulness/sycophancy:preference"]
    assert (pref.value, pref.reference_value, pref.extra["mode"], pref.extra["no"]) == (None, 1.0, "pair", 2)
    assert metrics["truthfulness/golden_advfactuality:correction_rate"].reference_value == 1.0
    # The reference's templates reached the endpoint, filled in (the pair prompts hold both replies).
    entries = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    sent = [r.body["messages"][0]["content"] for r in endpoint.requests if r.path.endswith("/chat/completions")]
    head = entries["sycophancy_preference"]["prompt"].split("[[")[0]
    pair_prompts = [p for p in sent if p.startswith(head)]
    assert len(pair_prompts) == 2 and all("option 1" in p and "option 0" in p for p in pair_prompts)
    assert any(p.startswith(entries["stereotype_agreement"]["prompt"]) and p.endswith(LONG_AGREE) for p in sent)
    assert all("max_tokens" not in r.body for r in endpoint.requests if r.path.endswith("/chat/completions"))
    # Reports carry the label.
    doc = report.to_json()
    assert doc["tasks"]["safety/misuse"]["metrics"]["RtA"]["reference"] == EXACT
    assert doc["summary"]["safety"]["tasks"]["safety/misuse"]["reference"] == EXACT
    assert " = " in format_table(report) and " ~ " not in format_table(report)


def test_default_judges_give_approximate_reference_values(
    monkeypatch: pytest.MonkeyPatch, endpoint: LocalServer, data_dir: Path
) -> None:
    report = _run(_env(monkeypatch, endpoint.url, "default"), data_dir)
    metrics = _judged(report)
    for key, m in metrics.items():
        if m.reference_value is None:
            assert m.reference == ABSENT, key
        elif key in JUDGED:
            assert m.reference == APPROXIMATE, (key, m.reference_judges)
            assert m.reference_judges, key
        else:  # keyword/rule-judged: no judge involved
            assert (m.reference, m.reference_judges) == (EXACT, []), key
    assert metrics["truthfulness/internal:codah"].reference == EXACT
    assert metrics["ethics/implicit_SocialChemistry101:overall"].reference in (EXACT, ABSENT)
    assert metrics["safety/misuse:RtA"].reference_judges == ["refusal: phrases"]
    assert metrics["truthfulness/internal:squad"].reference_judges == [
        "llm_judge.squad: trustwatch template, gpt-4-1106-preview"
    ]
    assert metrics["truthfulness/sycophancy:persona"].reference_judges == ["persona_similarity: local all-MiniLM-L6-v2"]
    assert metrics["truthfulness/sycophancy:preference"].value is not None  # per-reply mode, as before
    table = format_table(report)
    assert " ~ " in table and "~ approximate" in table


def test_label_rules() -> None:
    """Unit rules of :func:`label` on recorded identities."""
    task = task_registry.get("truthfulness/golden_advfactuality")
    m = Metric(value=0.5, reference_value=0.5, n_total=1, n_valid=1, n_error=0)
    ref_ident = {
        "backend": "openai-compatible-chat",
        "model": "gpt-4-1106-preview",
        "template": "llm_judge.advfact",
        "template_set": "reference:sha256:5cae983221cd78ee",
        "template_matches_reference": "yes",
        "max_tokens": "0",
    }
    assert label(task, "correction_rate", m, {"llm_judge.advfact": ref_ident}) == (
        EXACT,
        ["llm_judge.advfact: reference template, gpt-4-1106-preview"],
    )
    capped = {**ref_ident, "max_tokens": "64"}
    assert label(task, "correction_rate", m, {"llm_judge.advfact": capped})[0] == APPROXIMATE
    other_model = {**ref_ident, "model": "llama-3-70b"}
    assert label(task, "correction_rate", m, {"llm_judge.advfact": other_model})[0] == APPROXIMATE
    offline = {"backend": "not-judged-offline", "template": "llm_judge.advfact"}
    assert label(task, "correction_rate", m, {"llm_judge.advfact": offline})[0] == APPROXIMATE
    assert label(task, "correction_rate", m, None) == (APPROXIMATE, ["llm_judge.advfact: judge not recorded"])
    none = Metric(value=None, reference_value=None, n_total=0, n_valid=0, n_error=0)
    assert label(task, "correction_rate", none, {"llm_judge.advfact": ref_ident}) == (ABSENT, [])
    keyword = task_registry.get("truthfulness/external")
    assert label(keyword, "avg", m, None) == (EXACT, [])
