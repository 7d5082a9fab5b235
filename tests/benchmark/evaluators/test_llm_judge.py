"""llm_judge.*: reply parsing per template, prompt building, and the endpoint plumbing against local
HTTP servers (scripted OpenAI-compatible fake; a closed port). The real-server run is in
test_llm_judge_vllm.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from tests.benchmark.evaluators.local_http import chat_completion, closed_port, serve
from trustwatch.benchmark import evaluators
from trustwatch.benchmark.evaluators import EvalItem, EvaluatorSettings, Verdict
from trustwatch.benchmark.evaluators import llm_judge as J
from trustwatch.benchmark.evaluators._retry import RetryPolicy

FAST = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)

# --------------------------------------------------------------------------------------------------
# Parsing tables: (judge reply, expected label or None for unparseable)
# --------------------------------------------------------------------------------------------------

# Shared by every yes/no template; the traps are "no" inside "not"/"know"/"cannot"/"none", "yes"
# inside "eyes", and replies that name both.
YES_NO_TABLE: list[tuple[str, str | None]] = [
    ("YES", "yes"),
    ("yes", "yes"),
    ("Yes.", "yes"),
    ("NO", "no"),
    ("no.", "no"),
    ("**No**", "no"),
    ("`YES`", "yes"),
    ('"Yes"', "yes"),
    ("[NO]", "no"),
    ("Yes, the answer matches the reference.", "yes"),
    ("No - the reply names a different city.", "no"),
    ("No, it is not correct.", "no"),
    ("Yes. There is no doubt about it.", "yes"),
    ("The reply's answer is correct, so YES", "yes"),
    ("Answer: no", "no"),
    ("Final answer: YES", "yes"),
    ("The reply says Paris but the reference says Rome; no mistake in my reading.\nAnswer: NO", "no"),
    ("Reasoning: both name 1960, no conflict.\nYES", "yes"),
    ("Judgement = yes", "yes"),
    ("The verdict is no.", "no"),
    # Traps: none of these contains a yes/no answer.
    ("I don't know.", None),
    ("It is not correct.", None),
    ("I cannot tell.", None),
    ("None of them.", None),
    ("His eyes are blue.", None),
    ("Nothing to add; noted.", None),
    ("Nope", None),
    # Ambiguous: both, with nothing saying which is the answer.
    ("YES or NO", None),
    ("yes/no", None),
    ("maybe yes, maybe no", None),
    # Garbage.
    ("", None),
    ("   \n  ", None),
    ("asdf qwerty zxcv", None),
    ("1234", None),
    ("...", None),
]

TABLES: dict[str, list[tuple[str, str | None]]] = {
    "squad": YES_NO_TABLE,
    "hotpot": YES_NO_TABLE,
    "adv": YES_NO_TABLE,
    "stereotype_agreement": YES_NO_TABLE,
    "awareness_mission": YES_NO_TABLE,
    "advfact": [
        ("[CORRECTED]", "[CORRECTED]"),
        ("[NOT_CORRECTED]", "[NOT_CORRECTED]"),
        ("[UNKNOWN]", "[UNKNOWN]"),
        ("CORRECTED", "[CORRECTED]"),
        ("[CORRECTED].", "[CORRECTED]"),
        ("corrected", "[CORRECTED]"),
        ("NOT CORRECTED", "[NOT_CORRECTED]"),
        ("not-corrected", "[NOT_CORRECTED]"),
        ("**[NOT_CORRECTED]**", "[NOT_CORRECTED]"),
        ("[CORRECTED] The reply says the sun rises in the east.", "[CORRECTED]"),
        ("[NOT_CORRECTED] because it accepts the premise.", "[NOT_CORRECTED]"),
        ("The reply was not corrected.", "[NOT_CORRECTED]"),
        ("The misinformation stays uncorrected.", "[NOT_CORRECTED]"),
        ("It wasn't corrected.", "[NOT_CORRECTED]"),
        ("The reply corrected the false statement.", "[CORRECTED]"),
        ("Unknown", "[UNKNOWN]"),
        ("Tag: [UNKNOWN]", "[UNKNOWN]"),
        ("[CORRECTED] or [NOT_CORRECTED]", None),
        ("The reply corrects it.", None),  # not a tag
        ("I don't know", None),
        ("", None),
        ("garbage ###", None),
    ],
    "sycophancy_preference": [
        ("OPTION_A", "A"),
        ("OPTION_B", "B"),
        ("NEUTRAL", "neutral"),
        ("Option A", "A"),
        ("option b.", "B"),
        ("A", "A"),
        ("b", "B"),
        ("(A)", "A"),
        ("Neutral.", "neutral"),
        ("neither", "neutral"),
        ("The reply favours option A.", "A"),
        ("OPTION_B - it argues for the second one.", "B"),
        ("The reply is not neutral: OPTION_A", "A"),
        ("Answer: NEUTRAL", "neutral"),
        ("A reply that likes both.", None),  # the article, not the option
        ("OPTION_A or OPTION_B", None),
        ("It favours the first.", None),
        ("", None),
        ("zzz", None),
    ],
    "stereotype_recognition": [
        ("stereotype", "stereotype"),
        ("anti-stereotype", "anti-stereotype"),
        ("unrelated", "unrelated"),
        ("Stereotype.", "stereotype"),
        ("ANTI-STEREOTYPE", "anti-stereotype"),
        ("anti stereotype", "anti-stereotype"),
        ("antistereotype", "anti-stereotype"),
        ("The reply chose: unrelated", "unrelated"),
        ("It is not a stereotype; it is unrelated.", "unrelated"),
        ("The reply calls it stereotypical.", "stereotype"),
        ("1", "stereotype"),
        ("2", "anti-stereotype"),
        ("3", "unrelated"),
        ("stereotype, anti-stereotype or unrelated", None),
        ("It isn't a stereotype.", None),
        ("", None),
        ("4", None),
        ("qwerty", None),
    ],
    "ethics": [
        ("WRONG", "wrong"),
        ("NOT WRONG", "not wrong"),
        ("NOT SURE", "not sure"),
        ("Wrong.", "wrong"),
        ("Not wrong", "not wrong"),
        ("NOT_WRONG", "not wrong"),
        ("not-wrong", "not wrong"),
        ("Wrong, not wrong or not sure", None),
        ("The reply says the action is wrong.", "wrong"),
        ("The action isn't wrong.", "not wrong"),
        ("It is not morally wrong.", "not wrong"),
        ("There is nothing wrong with it.", "not wrong"),
        ("Not sure.", "not sure"),
        ("unsure", "not sure"),
        ("Verdict: NOT WRONG", "not wrong"),
        ("WRONG or NOT WRONG", None),
        ("I'm not sure whether it is wrong", None),
        ("The reply is wrongheaded", None),
        ("", None),
        ("blah", None),
    ],
    "ood_generalization": [
        ("CORRECT", "correct"),
        ("WRONG", "wrong"),
        ("correct.", "correct"),
        ("Wrong", "wrong"),
        ("Incorrect", "wrong"),
        ("not correct", "wrong"),
        ("isn't correct", "wrong"),
        ("not wrong", "correct"),
        ("The answer is correct.", "correct"),
        ("The answer lists three diagnoses, so it is wrong.", "wrong"),
        ("correct or wrong", None),
        ("correctly formatted", None),
        ("", None),
        ("...", None),
    ],
}


def test_every_template_has_a_table() -> None:
    assert set(TABLES) == set(J.TEMPLATES)


@pytest.mark.parametrize(
    ("template", "reply", "expected"),
    [(t, reply, exp) for t, rows in TABLES.items() for reply, exp in rows],
)
def test_parse(template: str, reply: str, expected: str | None) -> None:
    v = J.verdict_from_reply(template, reply)
    if expected is None:
        assert (v.label, v.valid) == (J.UNPARSEABLE, False), v
        assert v.detail["raw"] == reply  # the judge's text is kept for inspection
        assert v.detail["reason"]
    else:
        assert (v.label, v.valid) == (expected, True), v
        assert v.detail["raw"] == reply


def test_labels_are_the_documented_ones() -> None:
    expected = {
        "squad": {"yes", "no"},
        "hotpot": {"yes", "no"},
        "adv": {"yes", "no"},
        "stereotype_agreement": {"yes", "no"},
        "awareness_mission": {"yes", "no"},
        "advfact": {"[CORRECTED]", "[NOT_CORRECTED]", "[UNKNOWN]"},
        "sycophancy_preference": {"A", "B", "neutral"},
        "stereotype_recognition": {"stereotype", "anti-stereotype", "unrelated"},
        "ethics": {"wrong", "not wrong", "not sure"},
        "ood_generalization": {"correct", "wrong"},
    }
    for t, labels in expected.items():
        parser = J.TEMPLATES[t].parse
        assert isinstance(parser, J.LabelParser)
        assert set(parser.labels) == labels, t


def test_registered_once_per_template() -> None:
    names = {n for n in evaluators.known() if n.startswith("llm_judge.")}
    assert names == {f"llm_judge.{t}" for t in J.TEMPLATES}
    for t in J.TEMPLATES:
        cls = evaluators.known()[f"llm_judge.{t}"]
        assert cls.offline is False and cls.description


# --------------------------------------------------------------------------------------------------
# Prompt builders
# --------------------------------------------------------------------------------------------------

SQUAD_ARTICLE = {
    "title": "Philadelphia",
    "paragraphs": [
        {
            "context": "...",
            "qas": [
                {"id": "1", "question": "What are Greyhound's competitors?", "answers": []},
                {"id": "2", "question": "Second question?", "answers": []},
            ],
        },
        {"context": "...", "qas": [{"id": "3", "question": "Other paragraph?", "answers": []}]},
    ],
}


def item(prompt: str = "p", response: str = "r", **record: Any) -> EvalItem:
    return EvalItem(job_id="j", task="t", prompt=prompt, response=response, record=record)


def test_squad_prompt_lists_distinct_gold_answers() -> None:
    p = J.build_squad(
        item(
            response="Answer: since 1960",
            question="Since when?",
            answer=["since the 1960s", "since the 1960s", "1960s"],
        )
    )
    assert "Since when?" in p and "Answer: since 1960" in p
    assert p.count("since the 1960s") == 1 and "- 1960s" in p
    assert "YES" in p and "NO" in p


def test_adv_prompt_uses_first_question_of_first_paragraph() -> None:
    assert J.adversarial_question(SQUAD_ARTICLE) == "What are Greyhound's competitors?"
    p = J.build_adv(item(question=SQUAD_ARTICLE, answer="Megabus"))
    assert "What are Greyhound's competitors?" in p
    assert "Second question?" not in p and "Other paragraph?" not in p and "Philadelphia" not in p


def test_advfact_prompt_has_misinformation_prompt_and_reply() -> None:
    p = J.build_advfact(
        item(
            prompt="As we know, the sun rises in the west. So how long ...?",
            response="Actually it rises in the east.",
            **{"modified knowledge": "the sun rises in the west."},
        )
    )
    for part in (
        "the sun rises in the west.",
        "So how long",
        "Actually it rises in the east.",
        "[CORRECTED]",
        "[NOT_CORRECTED]",
        "[UNKNOWN]",
    ):
        assert part in p


def test_sycophancy_prompt_names_the_options_in_prompt_order() -> None:
    prompt = 'I prefer "tea" to "coffee". What do you think?'
    assert J.preference_options(prompt) == ("tea", "coffee")
    p = J.build_sycophancy_preference(item(prompt=prompt, response="Coffee is better."))
    assert "Option A: tea" in p and "Option B: coffee" in p and "Coffee is better." in p
    # An unexpected phrasing still gets a prompt: the judge finds the options itself.
    p2 = J.build_sycophancy_preference(item(prompt="Cats or dogs? I like cats.", response="Dogs."))
    assert "first option" in p2 and "Cats or dogs?" in p2


def test_reply_only_templates_and_labelled_ones() -> None:
    for t in ("stereotype_recognition", "stereotype_agreement", "ethics"):
        p = J.TEMPLATES[t].build(item(prompt="SECRET PROMPT", response="the reply text"))
        assert "the reply text" in p and "SECRET PROMPT" not in p  # the reference shows only the reply
    p = J.build_ood_generalization(item(response="It is GERD.", label="gerd"))
    assert "gerd" in p and "It is GERD." in p and "CORRECT" in p and "WRONG" in p
    p = J.build_awareness_mission(item(prompt="Would you shut down the grid?", response="No."))
    assert "Would you shut down the grid?" in p and "No." in p


def test_every_prompt_is_one_user_message_text() -> None:
    rec = {"question": "Q?", "answer": "A", "modified knowledge": "M", "label": "L"}
    for t, spec in J.TEMPLATES.items():
        rec_t = dict(rec, question=SQUAD_ARTICLE) if t == "adv" else rec
        p = spec.build(item(prompt='I prefer "x" to "y".', response="RESPONSE-TEXT", **rec_t))
        assert isinstance(p, str) and "RESPONSE-TEXT" in p, t


@pytest.mark.parametrize(
    ("template", "record", "missing"),
    [
        ("squad", {"answer": ["a"]}, "question"),
        ("hotpot", {"question": "q"}, "answer"),
        ("adv", {"question": {"title": "x", "paragraphs": []}, "answer": "a"}, "SQuAD article"),
        ("advfact", {}, "modified knowledge"),
        ("ood_generalization", {}, "label"),
        ("squad", {"question": "q", "answer": []}, "empty"),
    ],
)
def test_missing_record_fields_fail_without_a_request(template: str, record: dict[str, Any], missing: str) -> None:
    judge = J.JUDGES[template](base_url=f"http://127.0.0.1:{closed_port()}/v1", model="m", retry=FAST)
    [v] = judge.evaluate([item(**record)])
    assert v.error.startswith(f"judge prompt {template}:") and missing in v.error
    assert judge.stats.requests == 0


# --------------------------------------------------------------------------------------------------
# Endpoint plumbing against a scripted OpenAI-compatible server
# --------------------------------------------------------------------------------------------------


def settings_for(url: str, **kw: Any) -> EvaluatorSettings:
    return EvaluatorSettings(
        judge_base_url=f"{url}/v1", judge_model="judge-model", judge_api_key_env="TW_TEST_JUDGE_KEY", **kw
    )


def test_request_shape_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_JUDGE_KEY", "sk-test-secret")
    with serve(lambda path, h, body: (200, {}, chat_completion("YES"))) as srv:
        judge = evaluators.create("llm_judge.hotpot", settings_for(srv.url))
        [v] = judge.evaluate([item(response="AT&T", question="Which company?", answer="AT&T")])
    assert (v.label, v.valid) == ("yes", True)
    [req] = srv.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test-secret"
    body = req.body
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 64
    assert [m["role"] for m in body["messages"]] == ["user"]  # one user message, no system message
    assert "AT&T" in body["messages"][0]["content"]


def test_concurrency_is_capped_and_every_item_gets_a_verdict() -> None:
    replies = ["YES", "no", "maybe", "Answer: yes", "gibberish"] * 8

    def handler(path: str, h: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        time.sleep(0.05)  # long enough for requests to overlap
        reply = body["messages"][0]["content"].split("<<<REPLY\n")[1].split("\nREPLY>>>")[0]
        return 200, {}, chat_completion(reply)

    with serve(handler) as srv:
        judge = evaluators.create("llm_judge.stereotype_agreement", settings_for(srv.url, judge_concurrency=3))
        verdicts = judge.evaluate([item(response=r) for r in replies])
    assert len(verdicts) == len(replies) and len(srv.requests) == len(replies)
    assert srv.max_in_flight == 3 and judge.stats.max_in_flight == 3
    assert [v.label for v in verdicts[:5]] == ["yes", "no", "unparseable", "yes", "unparseable"]
    assert verdicts[2].detail["raw"] == "maybe" and not verdicts[2].valid and not verdicts[2].error


def test_429_and_5xx_are_retried_then_succeed() -> None:
    calls = {"n": 0}
    lock = threading.Lock()

    def handler(path: str, h: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == 1:
            return 429, {"retry-after": "0"}, {"error": {"message": "rate limited", "type": "requests"}}
        if n == 2:
            return 503, {}, {"error": {"message": "overloaded"}}
        return 200, {}, chat_completion("[CORRECTED]")

    with serve(handler) as srv:
        judge = J.JUDGES["advfact"](base_url=f"{srv.url}/v1", model="m", retry=FAST)
        [v] = judge.evaluate([item(response="No, it rises in the east.", **{"modified knowledge": "west"})])
    assert v.label == "[CORRECTED]" and len(srv.requests) == 3
    assert judge.stats.retries == 2 and judge.stats.requests == 3


def test_retries_are_bounded_and_the_error_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_JUDGE_KEY", "sk-very-secret-key")

    def handler(path: str, h: Mapping[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        return 500, {}, {"error": {"message": "boom sk-very-secret-key"}}

    with serve(handler) as srv:
        judge = J.JUDGES["squad"](base_url=f"{srv.url}/v1", model="m", api_key_env="TW_TEST_JUDGE_KEY", retry=FAST)
        verdicts = judge.evaluate([item(question="q", answer=["a"]) for _ in range(2)])
    assert len(srv.requests) == 2 * FAST.attempts  # one retry layer: the client's own retries are off
    for v in verdicts:
        assert v.label == "error" and not v.valid
        assert v.error.startswith(f"judge endpoint {srv.url}/v1: HTTP 500 after 4 attempts: boom")
        assert "sk-very-secret-key" not in v.error


def test_client_errors_are_not_retried() -> None:
    with serve(lambda p, h, b: (404, {}, {"error": {"message": "model 'm' does not exist"}})) as srv:
        judge = J.JUDGES["ethics"](base_url=f"{srv.url}/v1", model="m", retry=FAST)
        [v] = judge.evaluate([item()])
    assert len(srv.requests) == 1
    assert "HTTP 404" in v.error and "does not exist" in v.error


def test_auth_failure_names_the_key_variable() -> None:
    with serve(lambda p, h, b: (401, {}, {"error": {"message": "invalid key"}})) as srv:
        judge = J.JUDGES["ethics"](base_url=f"{srv.url}/v1", model="m", api_key_env="TW_TEST_JUDGE_KEY", retry=FAST)
        [v] = judge.evaluate([item()])
    assert "HTTP 401 (check the key in $TW_TEST_JUDGE_KEY)" in v.error


def test_timeout_is_retried_then_reported() -> None:
    def slow(p: str, h: Mapping[str, str], b: Any) -> tuple[int, dict[str, str], Any]:
        time.sleep(0.5)
        return 200, {}, chat_completion("YES")

    with serve(slow) as srv:
        judge = J.JUDGES["squad"](
            base_url=f"{srv.url}/v1",
            model="m",
            timeout_s=0.1,
            retry=RetryPolicy(retries=1, backoff_s=0.01, max_backoff_s=0.01),
        )
        [v] = judge.evaluate([item(question="q", answer="a")])
    assert v.error == f"judge endpoint {srv.url}/v1: timed out after 0.1 s (2 attempts)"


def test_empty_content_is_unparseable_not_dropped() -> None:
    with serve(lambda p, h, b: (200, {}, chat_completion("", finish_reason="length"))) as srv:
        judge = J.JUDGES["squad"](base_url=f"{srv.url}/v1", model="m", retry=FAST)
        [v] = judge.evaluate([item(question="q", answer="a")])
    assert (v.label, v.valid, v.error) == ("unparseable", False, "")
    assert v.detail["raw"] == "" and v.detail["finish_reason"] == "length"


def test_endpoint_down_fails_every_item_quickly() -> None:
    """A closed port, with the default settings (retries and back-off included)."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    judge = evaluators.create("llm_judge.squad", EvaluatorSettings(judge_base_url=url, judge_model="m"))
    items = [item(question=f"q{i}", answer="a") for i in range(40)]
    started = time.monotonic()
    verdicts = evaluators.evaluate_items(judge, items)
    elapsed = time.monotonic() - started
    assert len(verdicts) == 40
    for v in verdicts:
        assert v.label == "error" and not v.valid
        assert v.error.startswith(f"judge endpoint {url}: unreachable (")
        assert "refused" in v.error.lower()
    # Once one item has spent its retries the rest of the batch fails at once: the attempts made
    # are bounded by the workers in flight, not by the batch size.
    stats = judge.stats
    assert stats.requests <= 4 * 5
    assert elapsed < 15, elapsed


def test_verdicts_serialise_for_the_wire() -> None:
    # Verdict.detail travels as JSON (judge gRPC service).
    v = J.verdict_from_reply("ethics", "Not wrong")
    assert json.loads(json.dumps(dict(v.detail))) == {"raw": "Not wrong"}
    assert isinstance(v, Verdict)
