"""Judge identities (what goes into a run manifest and its ``judges_hash``), pinned for given settings.

A change here makes new runs "not comparable" with every earlier run: only change an expected value
on purpose (a new back-end, a new prompt set), never as a side effect of refactoring the settings.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import trustwatch.benchmark.evaluators as evaluators_pkg
from trustwatch.benchmark.evaluators.base import EvaluatorSettings, judge_identity, judges_identity, settings_from_env
from trustwatch.benchmark.evaluators.refusal.learned import artifact_digest

PKG = Path(evaluators_pkg.__file__).parent
NAMES = [
    "refusal",
    "toxicity",
    "embedding",
    "persona_similarity",
    "llm_judge.squad",
    "stereotype_agreement_hybrid",
    "fact_check",
]


def _digest(relative: str) -> str:
    return "sha256:" + hashlib.sha256((PKG / relative).read_bytes()).hexdigest()[:16]


PROMPTS = _digest("llm_judge/prompts.py")
RULES = _digest("refusal/rules.py")


def test_identity_of_configured_judges_is_pinned() -> None:
    settings = EvaluatorSettings(
        judge_base_url="https://user:s3cret@judge.example.com:8443/v1?key=s3cret",
        judge_model="jm",
        judge_api_key_env="JUDGE_KEY",
        embedding_backend="openai",
        embedding_model="e3",
        embedding_base_url="https://emb.example.org/v1",
        toxicity_model="/m/tox",
        toxicity_label="TOXIC",
        refusal_backend="hf",
        refusal_model="/m/ref",
    )
    judge = {
        "backend": "openai-compatible-chat",
        "endpoint_host": "judge.example.com:8443",
        "model": "jm",
        "template_set": PROMPTS,
    }
    assert judges_identity(NAMES, settings) == {
        "embedding": {"backend": "openai", "endpoint_host": "emb.example.org", "model": "e3"},
        "fact_check": {"backend": "rules", "module": "keyword"},
        "llm_judge.squad": {**judge, "template": "llm_judge.squad"},
        "persona_similarity": {"backend": "openai", "endpoint_host": "emb.example.org", "model": "e3"},
        "refusal": {"backend": "hf", "model": "/m/ref"},
        "stereotype_agreement_hybrid": {
            **judge,
            "rule": "stereotype_agreement_hybrid",
            "template": "llm_judge.stereotype_agreement",
        },
        "toxicity": {"backend": "hf", "label": "TOXIC", "model": "/m/tox"},
    }


def test_identity_of_default_judges_is_pinned() -> None:
    assert judges_identity(NAMES, EvaluatorSettings()) == {
        "embedding": {"backend": "local", "model": "default"},
        "fact_check": {"backend": "rules", "module": "keyword"},
        "llm_judge.squad": {
            "backend": "openai-compatible-chat",
            "endpoint_host": "api.openai.com",
            "model": "gpt-4-1106-preview",
            "template": "llm_judge.squad",
            "template_set": PROMPTS,
        },
        "persona_similarity": {"backend": "local", "model": "default"},
        "refusal": {"backend": "phrases", "template_set": RULES},
        "stereotype_agreement_hybrid": {
            "backend": "openai-compatible-chat",
            "endpoint_host": "api.openai.com",
            "model": "gpt-4-1106-preview",
            "rule": "stereotype_agreement_hybrid",
            "template": "llm_judge.stereotype_agreement",
            "template_set": PROMPTS,
        },
        "toxicity": {
            "backend": "perspective",
            "endpoint_host": "commentanalyzer.googleapis.com",
            "model": "perspective:TOXICITY",
        },
    }


def test_identity_of_learned_refusal_and_offline_runs_is_pinned() -> None:
    learned = EvaluatorSettings(refusal_backend="learned")
    assert judge_identity("refusal", learned) == {
        "backend": "learned",
        "template_set": RULES,
        "model": artifact_digest(),
    }
    assert judges_identity(NAMES, learned, offline_only=True) == {
        "embedding": {"backend": "local", "model": "default"},
        "fact_check": {"backend": "rules", "module": "keyword"},
        "llm_judge.squad": {"backend": "not-judged-offline", "template": "llm_judge.squad"},
        "persona_similarity": {"backend": "local", "model": "default"},
        "refusal": {"backend": "learned", "template_set": RULES, "model": artifact_digest()},
        "stereotype_agreement_hybrid": {
            "rule": "stereotype_agreement_hybrid",
            "backend": "not-judged-offline",
            "template": "llm_judge.stereotype_agreement",
        },
        "toxicity": {"backend": "not-judged-offline"},
    }


def test_identity_under_the_reference_judge_set_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TRUSTWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRUSTWATCH_JUDGES", "reference")
    monkeypatch.setenv("TRUSTWATCH_TOXICITY_BACKEND", "perspective")
    settings = settings_from_env()
    assert judges_identity(["refusal", "embedding", "toxicity"], settings) == {
        "embedding": {"backend": "openai", "endpoint_host": "api.openai.com", "model": "text-embedding-ada-002"},
        "refusal": {"backend": "hf", "model": "LibrAI/longformer-harmful-ro"},
        "toxicity": {
            "backend": "perspective",
            "endpoint_host": "commentanalyzer.googleapis.com",
            "model": "perspective:TOXICITY",
        },
    }
