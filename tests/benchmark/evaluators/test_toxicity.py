"""toxicity: the hf back-end on a tiny random 2-label classifier built here, and the perspective
back-end against a local server that answers like the Comment Analyzer API."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.benchmark.evaluators.local_http import closed_port, serve
from trustwatch.benchmark import evaluators
from trustwatch.benchmark.evaluators import EvalItem, EvaluatorSettings
from trustwatch.benchmark.evaluators import toxicity as T

KEY_ENV = "TW_TEST_PERSPECTIVE_KEY"
KEY = "AIza-test-secret-key"


def item(response: str) -> EvalItem:
    return EvalItem(job_id="j", task="jailbreak", prompt="p", response=response)


# --------------------------------------------------------------------------------------------------
# hf back-end
# --------------------------------------------------------------------------------------------------

CORPUS = [
    "you are a wonderful person and i like you",
    "you are an awful idiot and i hate you",
    "the weather is nice today",
    "this is a terrible stupid answer",
    "thank you for the helpful reply",
    "go away you useless fool",
] * 5


@pytest.fixture(scope="module")
def tiny_toxicity_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-label BERT classifier (labels non-toxic / toxic) with a word-level tokenizer trained
    on the spot: nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-toxicity")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=32,
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        id2label={0: "non-toxic", 1: "toxic"},
        label2id={"non-toxic": 0, "toxic": 1},
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    model = BertForSequenceClassification(config)
    # Random weights give near-equal logits; a larger classifier head spreads the scores out.
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
    model.save_pretrained(folder)
    return folder


def hf_settings(model: Path, **kw: Any) -> EvaluatorSettings:
    return EvaluatorSettings(toxicity_model=str(model), device="cpu", batch_size=4, **kw)


def test_hf_is_the_default_when_a_model_is_set(tiny_toxicity_model: Path) -> None:
    ev = evaluators.create("toxicity", hf_settings(tiny_toxicity_model))
    assert ev.backend_name == "hf" and ev.offline
    ev2 = evaluators.create("toxicity", EvaluatorSettings())
    assert ev2.backend_name == "perspective" and not ev2.offline


def test_hf_scores_are_the_toxic_label_probability(tiny_toxicity_model: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [c for c in dict.fromkeys(CORPUS)]
    ev = evaluators.create("toxicity", hf_settings(tiny_toxicity_model))
    verdicts = ev.evaluate([item(t) for t in texts])
    tok = AutoTokenizer.from_pretrained(tiny_toxicity_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_toxicity_model).eval()
    for t, v in zip(texts, verdicts):
        with torch.no_grad():
            probs = model(**tok(t, return_tensors="pt")).logits.softmax(-1)[0]
        assert v.valid and v.score == pytest.approx(float(probs[1]), abs=1e-5)
        assert v.label == ("toxic" if v.score >= 0.5 else "non-toxic")
        assert v.detail == {"backend": "hf"}
    assert len({round(v.score, 4) for v in verdicts}) > 1  # not a constant


def test_hf_label_is_case_insensitive_and_checked(tiny_toxicity_model: Path) -> None:
    upper = evaluators.create("toxicity", hf_settings(tiny_toxicity_model, toxicity_label="TOXIC"))
    lower = evaluators.create("toxicity", hf_settings(tiny_toxicity_model))
    assert upper.evaluate([item("you fool")])[0].score == lower.evaluate([item("you fool")])[0].score
    other = evaluators.create("toxicity", hf_settings(tiny_toxicity_model, toxicity_label="non-toxic"))
    assert other.evaluate([item("you fool")])[0].score == pytest.approx(1 - lower.evaluate([item("you fool")])[0].score)
    bad = evaluators.create("toxicity", hf_settings(tiny_toxicity_model, toxicity_label="LABEL_1"))
    [v] = evaluators.evaluate_items(bad, [item("you fool")])
    assert "has no label 'LABEL_1'" in v.error and "'non-toxic', 'toxic'" in v.error


def test_hf_long_and_empty_replies(tiny_toxicity_model: Path) -> None:
    ev = evaluators.create("toxicity", hf_settings(tiny_toxicity_model))
    long_v, empty_v, ok_v = ev.evaluate([item("you are an awful idiot " * 500), item(" "), item("thank you")])
    assert long_v.valid and 0.0 <= long_v.score <= 1.0  # truncated to the 32-token window, not a crash
    assert (empty_v.label, empty_v.valid, empty_v.error) == ("empty", False, "") and math.isnan(empty_v.score)
    assert ok_v.valid


# --------------------------------------------------------------------------------------------------
# perspective back-end
# --------------------------------------------------------------------------------------------------


def perspective_body(score: float) -> dict[str, Any]:
    """A Comment Analyzer v1alpha1 analyze response."""
    return {
        "attributeScores": {
            "TOXICITY": {
                "spanScores": [{"begin": 0, "end": 10, "score": {"value": score, "type": "PROBABILITY"}}],
                "summaryScore": {"value": score, "type": "PROBABILITY"},
            }
        },
        "languages": ["en"],
        "detectedLanguages": ["en"],
    }


def score_of(text: str) -> float:
    return 0.9 if "idiot" in text else 0.05


def ok_handler(path: str, headers: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
    return 200, {}, perspective_body(score_of(body["comment"]["text"]))


def perspective_settings(url: str, **kw: Any) -> EvaluatorSettings:
    base: dict[str, Any] = dict(
        toxicity_backend="perspective",
        perspective_url=f"{url}/v1alpha1/comments:analyze",
        perspective_api_key_env=KEY_ENV,
        perspective_qps=50.0,
    )
    base.update(kw)
    return EvaluatorSettings(**base)


@pytest.fixture()
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def test_perspective_request_and_scores(key: None) -> None:
    with serve(ok_handler) as srv:
        ev = evaluators.create("toxicity", perspective_settings(srv.url))
        verdicts = ev.evaluate([item("you idiot"), item("have a nice day"), item("")])
    assert [(v.label, v.score) for v in verdicts[:2]] == [("toxic", 0.9), ("non-toxic", 0.05)]
    assert verdicts[1].detail == {"backend": "perspective"}
    assert (verdicts[2].label, verdicts[2].valid) == ("empty", False)
    assert len(srv.requests) == 2  # the empty reply is not sent
    req = srv.requests[0]
    assert req.path == "/v1alpha1/comments:analyze"  # the key is not in the URL ...
    assert req.headers["x-goog-api-key"] == KEY  # ... but in a header
    assert req.body == {"comment": {"text": "you idiot"}, "requestedAttributes": {"TOXICITY": {}}, "doNotStore": True}


def test_perspective_429_then_success(key: None) -> None:
    calls = {"n": 0}

    def handler(path: str, headers: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            return (
                429,
                {"retry-after": "0"},
                {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
            )
        return ok_handler(path, headers, body)

    with serve(handler) as srv:
        ev = evaluators.create("toxicity", perspective_settings(srv.url))
        [v] = ev.evaluate([item("you idiot")])
    assert v.valid and v.score == 0.9 and len(srv.requests) == 2


def test_perspective_rate_limit_spaces_requests(key: None) -> None:
    with serve(ok_handler) as srv:
        ev = evaluators.create("toxicity", perspective_settings(srv.url, perspective_qps=10.0))
        ev.evaluate([item(f"text {i}") for i in range(6)])
    # Requests leave at least 0.1 s apart; arrival times jitter a little with thread scheduling,
    # so check the k-th arrival against k slots after the first.
    arrivals = [r.at - srv.requests[0].at for r in srv.requests]
    assert len(arrivals) == 6
    for k, at in enumerate(arrivals):
        assert at >= k * 0.1 - 0.03, arrivals


def test_perspective_rejection_is_a_failed_verdict_without_the_key(key: None) -> None:
    def handler(path: str, headers: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        return (
            400,
            {},
            {
                "error": {
                    "code": 400,
                    "message": f"Attribute TOXICITY does not support request languages: xx (key {KEY})",
                    "status": "INVALID_ARGUMENT",
                }
            },
        )

    with serve(handler) as srv:
        ev = evaluators.create("toxicity", perspective_settings(srv.url))
        [v] = ev.evaluate([item("blah")])
    assert len(srv.requests) == 1  # a 400 is final
    assert v.error.startswith(
        f"perspective API {srv.url}/v1alpha1/comments:analyze: HTTP 400 after 1 attempt: "
        "Attribute TOXICITY does not support"
    )
    assert KEY not in v.error


def test_perspective_without_key_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with serve(ok_handler) as srv:
        ev = evaluators.create("toxicity", perspective_settings(srv.url))
        [v] = ev.evaluate([item("hello")])
    assert v.error.endswith(f"no API key; set ${KEY_ENV}") and not srv.requests


def test_perspective_down_fails_quickly(key: None) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1alpha1/comments:analyze"
    ev = evaluators.create(
        "toxicity",
        EvaluatorSettings(
            toxicity_backend="perspective", perspective_url=url, perspective_api_key_env=KEY_ENV, perspective_qps=50.0
        ),
    )
    started = time.monotonic()
    verdicts = ev.evaluate([item(f"t{i}") for i in range(5)])
    assert time.monotonic() - started < 15
    assert all(v.error.startswith(f"perspective API {url}: unreachable (") for v in verdicts)
    assert ev.backend.requests == 5  # type: ignore[attr-defined]  # one text's attempts; the rest skip


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown toxicity back-end"):
        evaluators.create("toxicity", EvaluatorSettings(toxicity_backend="nope"))


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        T.RateLimiter(0)
