"""The ``reference`` judge set's LLM judges: the reference toolkit's templates, read at run time from
../shared (never from trustwatch), filled as the reference fills them, and sycophancy pair mode.

The oracle for "as the reference fills them" is the reference toolkit itself: its ``AutoEvaluator`` and
task evaluators run with their GPT call replaced by a recorder (tests/harness/reference.py), and the
prompts they would send are compared with the prompts trustwatch sent to a local endpoint.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.benchmark.evaluators.local_http import LocalServer, chat_completion, serve
from tests.harness.reference import REFERENCE_DIR, Reference
from trustwatch.benchmark.evaluators import EvalItem, EvaluatorSettings, create, evaluate_items
from trustwatch.benchmark.evaluators.base import judge_identity, settings_from_env
from trustwatch.benchmark.evaluators.embedding import EmbeddingSettings
from trustwatch.benchmark.evaluators.llm_judge import reference as ref
from trustwatch.benchmark.evaluators.llm_judge.evaluator import PAIR_PENDING, JudgeSettings
from trustwatch.benchmark.evaluators.refusal import RefusalSettings

TEMPLATES_FILE = REFERENCE_DIR / "trustllm" / "prompt" / "task_prompt.json"


@pytest.fixture(autouse=True)
def _fresh_templates() -> Iterator[None]:
    ref.clear_cache()
    yield
    ref.clear_cache()


def _reference_settings(monkeypatch: pytest.MonkeyPatch, url: str = "http://127.0.0.1:9/v1") -> EvaluatorSettings:
    monkeypatch.setenv("TRUSTWATCH_JUDGES", "reference")
    monkeypatch.setenv("TRUSTWATCH_REFERENCE_TEMPLATES", str(TEMPLATES_FILE))
    monkeypatch.setenv("TRUSTWATCH_JUDGE_BASE_URL", url)
    monkeypatch.setenv("TRUSTWATCH_JUDGE_API_KEY_ENV", "TW_TEST_UNSET_KEY")
    monkeypatch.setenv("TRUSTWATCH_REMOTE_MAX_RETRIES", "0")
    return settings_from_env()


def _scripted(answer: str) -> Any:
    def handler(path: str, headers: Any, body: Any) -> tuple[int, dict[str, str], Any]:
        return 200, {}, chat_completion(answer)

    return handler


def _sent(server: LocalServer) -> list[str]:
    return [r.body["messages"][0]["content"] for r in server.requests]


# --------------------------------------------------------------------------------------------------
# Settings and loading
# --------------------------------------------------------------------------------------------------


def test_reference_set_defaults_and_explicit_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _reference_settings(monkeypatch)
    assert s.of(RefusalSettings) == RefusalSettings(backend="hf", model="LibrAI/longformer-harmful-ro")
    assert (s.of(EmbeddingSettings).backend, s.of(EmbeddingSettings).model) == ("openai", "text-embedding-ada-002")
    assert (s.of(JudgeSettings).model, s.of(JudgeSettings).max_tokens) == ("gpt-4-1106-preview", 0)
    monkeypatch.setenv("TRUSTWATCH_REFUSAL_BACKEND", "phrases")
    assert settings_from_env().of(RefusalSettings).backend == "phrases"
    assert settings_from_env(refusal_backend="learned").of(RefusalSettings).backend == "learned"
    monkeypatch.delenv("TRUSTWATCH_JUDGES")
    default = settings_from_env().as_dict()
    assert (default["judges"], default["embedding_backend"], default["judge_max_tokens"]) == ("default", "local", 64)


def test_unknown_judge_set_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_JUDGES", "gpt")
    with pytest.raises(ValueError, match="TRUSTWATCH_JUDGES='gpt': use one of default, reference"):
        settings_from_env()


def test_known_digests_are_those_of_the_reference_templates() -> None:
    entries = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    for key, digest in ref.KNOWN_DIGESTS.items():
        assert ref.template_digest(entries[key]) == digest, key
    assert {u.key for u in ref.USES.values()} == set(ref.KNOWN_DIGESTS)


def test_templates_from_the_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REFERENCE_DIR))
    for name in [m for m in sys.modules if m == "trustllm" or m.startswith("trustllm.")]:
        monkeypatch.delitem(sys.modules, name)
    templates = ref.load_reference_templates("")
    assert templates.source.startswith("package trustllm")
    assert all(templates.is_reference(u.key) for u in ref.USES.values())


def test_missing_templates_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trustllm", None)  # import trustllm -> ImportError
    monkeypatch.setitem(sys.modules, "trustllm.config", None)
    with pytest.raises(ref.ReferenceTemplatesUnavailable) as err:
        ref.load_reference_templates("")
    assert "pip install 'trustwatch[reference]'" in str(err.value)
    assert "TRUSTWATCH_REFERENCE_TEMPLATES" in str(err.value)
    settings = EvaluatorSettings(judges="reference")
    with pytest.raises(ref.ReferenceTemplatesUnavailable):
        judge_identity("llm_judge.squad", settings)
    with pytest.raises(ref.ReferenceTemplatesUnavailable, match="no such file"):
        ref.load_reference_templates(str(TEMPLATES_FILE.parent / "missing.json"))


def test_a_modified_template_file_is_not_the_reference(tmp_path: Path) -> None:
    entries = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    entries["squad"]["prompt"] = entries["squad"]["prompt"].replace("YES", "Y")
    path = tmp_path / "task_prompt.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    settings = EvaluatorSettings(judges="reference", reference_templates=str(path), judge_max_tokens=0)
    ident = judge_identity("llm_judge.squad", settings)
    assert ident["template_matches_reference"] == "no"
    assert judge_identity("llm_judge.hotpot", settings)["template_matches_reference"] == "yes"


# --------------------------------------------------------------------------------------------------
# Prompts: what trustwatch sends == what the reference would send
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def reference(tmp_path: Path) -> Reference:
    return Reference(tmp_path)


def _reference_prompts(reference: Reference, monkeypatch: pytest.MonkeyPatch, answer: str, call: Any) -> list[str]:
    """The prompts the reference sends to its GPT judge while ``call(gpt_auto_eval)`` runs."""
    gpt: Any = reference._import("trustllm.utils.gpt_auto_eval")
    prompts: list[str] = []

    def record(string: str, *_a: Any, **_k: Any) -> str:
        prompts.append(string)
        return answer

    monkeypatch.setattr(gpt, "get_res", record)
    with reference._sandbox():
        call(gpt)
    return prompts


SQUAD = {"question": "Who wrote Hamlet?", "answer": ["Shakespeare", "William Shakespeare"], "source": "squad"}
ADV = {
    "question": {"title": "t", "paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "Where is it?"}]}]},
    "answer": "Paris",
    "source": "adversarial",
}
ADVFACT = {"modified knowledge": "The sun orbits the earth.", "knowledge": "The earth orbits the sun."}
CASES = [
    ("squad", "squad", SQUAD, False),
    ("hotpot", "hotpot", {"question": "Which river?", "answer": "Nile", "source": "hotpot"}, False),
    ("adv", "adv", ADV, False),
    ("advfact", "advfact", ADVFACT, False),
    ("stereotype_recognition", "stereotype_recognition", {}, True),
    ("stereotype_agreement", "stereotype_agreement", {}, True),
    ("ethics", "ETHICS", {}, True),
]


@pytest.mark.parametrize(("template", "key", "record", "concat"), CASES, ids=[c[0] for c in CASES])
def test_prompt_is_the_reference_template_filled_in(
    monkeypatch: pytest.MonkeyPatch,
    reference: Reference,
    template: str,
    key: str,
    record: dict[str, Any],
    concat: bool,
) -> None:
    prompt, reply = "As we know, the sun orbits the earth. So why?", "It is\nYES, [[answer]] as I said."
    with serve(_scripted("YES")) as server:
        settings = _reference_settings(monkeypatch, f"{server.url}/v1")
        judge = create(f"llm_judge.{template}", settings)
        verdicts = evaluate_items(judge, [EvalItem("r/t/0/0", "t", prompt, reply, record)])
    assert not verdicts[0].error and verdicts[0].detail["raw"] == "YES"
    assert server.requests[0].body["temperature"] == 0
    assert "max_tokens" not in server.requests[0].body  # the reference sends no cap
    assert server.requests[0].body["model"] == "gpt-4-1106-preview"

    data = [{**record, "prompt": prompt, "res": reply}]
    if template == "adv":  # the reference derives question_text before it asks the judge
        data[0]["question_text"] = data[0]["question"]["paragraphs"][0]["qas"][0]["question"]
    expected = _reference_prompts(
        reference, monkeypatch, "YES", lambda gpt: gpt.AutoEvaluator().evaluate(data, task=key, concat=concat)
    )
    assert _sent(server) == expected
    assert _sent(server)[0] != reply  # the template is there
    assert json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))[key]["prompt"].split("[[")[0] in _sent(server)[0]


def test_ood_generalization_prompt_is_the_reference_direct_call(
    monkeypatch: pytest.MonkeyPatch, reference: Reference
) -> None:
    record = {"label": "viral pharyngitis", "source": "ddxplus"}
    reply = "Based on the symptoms described, I would consider several possibilities for this patient here."
    with serve(_scripted("wrong")) as server:
        settings = _reference_settings(monkeypatch, f"{server.url}/v1")
        verdict = evaluate_items(
            create("llm_judge.ood_generalization", settings), [EvalItem("r/t/0/0", "t", "p", reply, record)]
        )
    assert verdict[0].label == "wrong"
    rob: Any = reference.task("robustness")
    expected = _reference_prompts(
        reference, monkeypatch, "wrong", lambda gpt: rob.ood_generalization([{**record, "prompt": "p", "res": reply}])
    )
    assert _sent(server) == expected


# --------------------------------------------------------------------------------------------------
# Pair mode (sycophancy preference)
# --------------------------------------------------------------------------------------------------


def _pref(i: int, a: str, b: str, reply: str, sample: int = 0) -> EvalItem:
    return EvalItem(
        f"run1/truthfulness/sycophancy/{i}/{sample}",
        "truthfulness/sycophancy",
        f'I prefer "{a}" to "{b}". What do you think?',
        reply,
        {"source": "preference", "n_completion": "", "s_completion": ""},
    )


PAIRS = [(179, "tea", "coffee", "Tea is great.", "Coffee is great."), (181, "cats", "dogs", "Both.", "Both.")]


def _pair_items() -> list[EvalItem]:
    out = []
    for i, a, b, r1, r2 in PAIRS:
        out += [_pref(i, a, b, r1), _pref(i + 1, b, a, r2)]
    return out


def test_pair_mode_judges_both_replies_together_as_the_reference(
    monkeypatch: pytest.MonkeyPatch, reference: Reference
) -> None:
    with serve(_scripted("NO")) as server:
        settings = _reference_settings(monkeypatch, f"{server.url}/v1")
        verdicts = evaluate_items(create("llm_judge.sycophancy_preference", settings), _pair_items())
    assert len(server.requests) == 2  # one request per pair, not per reply
    assert [v.label for v in verdicts] == ["no"] * 4
    assert all(v.detail["mode"] == "pair" and v.detail["raw"] == "NO" for v in verdicts)
    assert verdicts[0].detail["pair"] == [179, 180]
    data = [
        {"prompt": it.prompt, "res": it.response, "source": "preference", "n_completion": "", "s_completion": ""}
        for it in _pair_items()
    ]
    truth: Any = reference.task("truthfulness")
    expected = _reference_prompts(reference, monkeypatch, "NO", lambda gpt: truth.sycophancy_eval(data, "preference"))
    assert sorted(_sent(server)) == sorted(expected)


def test_pair_mode_across_batches_and_unpaired_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(_scripted("YES")) as server:
        settings = _reference_settings(monkeypatch, f"{server.url}/v1")
        judge = create("llm_judge.sycophancy_preference", settings)
        items = _pair_items()
        first = evaluate_items(judge, [items[1], items[2]])  # second half of pair 1, first half of pair 2
        assert [v.label for v in first] == [PAIR_PENDING, PAIR_PENDING]
        assert not server.requests
        second = evaluate_items(judge, [items[0], items[3], _pref(179, "tea", "coffee", "x", sample=1)])
    assert [v.label for v in second] == ["yes", "yes", PAIR_PENDING]  # sample 1 has no partner yet
    assert len(server.requests) == 2
    assert sorted(p[1] for v in second[:2] for p in [v.detail["pair"]]) == [180, 182]
    bad = evaluate_items(judge, [EvalItem("r/t/5/0", "t", "What do you prefer?", "tea", {})])
    assert bad[0].error.startswith("judge prompt sycophancy_preference: pair mode needs")


def test_default_judges_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the reference set: trustwatch's own prompts, one reply at a time."""
    with serve(_scripted("OPTION_A")) as server:
        settings = EvaluatorSettings(judge_base_url=f"{server.url}/v1", judge_api_key_env="TW_TEST_UNSET_KEY")
        verdicts = evaluate_items(create("llm_judge.sycophancy_preference", settings), _pair_items())
    assert len(server.requests) == 4 and [v.label for v in verdicts] == ["A"] * 4
    entries = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    assert entries["sycophancy_preference"]["prompt"].split("[[")[0] not in _sent(server)[0]
