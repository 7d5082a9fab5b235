"""Per-family evaluator settings: one place of truth for every variable, a bundle keyed by type, and
each evaluator reading only its own family."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import pytest

from trustwatch.benchmark.evaluators import create
from trustwatch.benchmark.evaluators._settings import (
    FAMILIES,
    EvaluatorSettings,
    JudgeSet,
    LocalModelSettings,
    RemoteSettings,
    SettingsError,
    code,
    env_name,
    family,
    key_of,
    settings_from_env,
    var,
)
from trustwatch.benchmark.evaluators.embedding import EmbeddingSettings, LocalBackend, OpenAIBackend
from trustwatch.benchmark.evaluators.llm_judge.evaluator import JudgeSettings
from trustwatch.benchmark.evaluators.refusal import RefusalSettings
from trustwatch.benchmark.evaluators.toxicity import HFBackend, PerspectiveBackend, ToxicitySettings
from trustwatch.platform import config

#: The variables that configure evaluators (each must be a field of exactly one settings family).
EVALUATOR_PREFIXES = (
    "TRUSTWATCH_REFUSAL_",
    "TRUSTWATCH_JUDGE_",
    "TRUSTWATCH_JUDGES",
    "TRUSTWATCH_REFERENCE_TEMPLATES",
    "TRUSTWATCH_EMBEDDING_",
    "TRUSTWATCH_TOXICITY_",
    "TRUSTWATCH_PERSPECTIVE_",
    "TRUSTWATCH_REMOTE_",
)
FAMILY_CLASSES = {
    JudgeSet,
    RemoteSettings,
    LocalModelSettings,
    RefusalSettings,
    JudgeSettings,
    EmbeddingSettings,
    ToxicitySettings,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("TRUSTWATCH_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _all_fields() -> list[tuple[type, dataclasses.Field[object]]]:
    return [(cls, f) for cls in FAMILIES.known().values() for f in dataclasses.fields(cls)]


def test_the_families_are_found_next_to_their_evaluators() -> None:
    assert set(FAMILIES.known().values()) == FAMILY_CLASSES


def test_every_settings_field_has_a_declared_variable_with_its_default_and_back() -> None:
    declared_by_fields: list[str] = []
    for cls, f in _all_fields():
        name = env_name(f)
        if not name:
            continue
        declared_by_fields.append(name)
        declared = config.VARIABLES[name]
        assert declared.help, name
        assert f.default == type(f.default)(declared.default), f"{cls.__name__}.{f.name} vs {name}"
        assert key_of(f) == name.removeprefix("TRUSTWATCH_").lower()
    evaluator_vars = sorted(n for n in config.VARIABLES if n.startswith(EVALUATOR_PREFIXES))
    assert sorted(declared_by_fields) == evaluator_vars  # each exactly once, and none left without a field


def test_only_runtime_knobs_have_no_variable() -> None:
    code_only = {key_of(f) for _, f in _all_fields() if not env_name(f)}
    assert code_only == {"batch_size", "device", "refusal_label"}


def test_the_defaults_are_the_documented_ones() -> None:
    # The values deployments rely on (k8s ConfigMaps set some of them, the rest come from here).
    defaults = EvaluatorSettings().as_dict()
    assert defaults == {
        "judges": "default",
        "remote_max_retries": 4,
        "remote_timeout_s": 60.0,
        "batch_size": 32,
        "device": "",
        "refusal_backend": "phrases",
        "refusal_model": "LibrAI/longformer-harmful-ro",
        "refusal_label": "LABEL_0",
        "judge_base_url": "https://api.openai.com/v1",
        "judge_model": "gpt-4-1106-preview",
        "judge_api_key_env": "OPENAI_API_KEY",
        "judge_concurrency": 4,
        "judge_timeout_s": 60.0,
        "judge_max_tokens": 64,
        "reference_templates": "",
        "embedding_backend": "local",
        "embedding_model": "",
        "embedding_base_url": "https://api.openai.com/v1",
        "embedding_api_key_env": "OPENAI_API_KEY",
        "toxicity_backend": "",
        "toxicity_model": "",
        "toxicity_label": "toxic",
        "perspective_api_key_env": "PERSPECTIVE_API_KEY",
        "perspective_url": "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze",
        "perspective_qps": 1.0,
    }
    assert isinstance(defaults["judge_timeout_s"], float) and isinstance(defaults["judge_concurrency"], int)


def test_bundle_routes_keys_to_families_and_is_immutable() -> None:
    s = EvaluatorSettings(judge_model="m", refusal_backend="learned", batch_size=4)
    assert s.of(JudgeSettings).model == "m"
    assert s.of(RefusalSettings) == RefusalSettings(backend="learned")
    assert s.of(LocalModelSettings).batch_size == 4
    assert s.of(EmbeddingSettings) == EmbeddingSettings()
    # Families can be given whole, and keys win over them.
    t = EvaluatorSettings(RefusalSettings(backend="hf", model="/m"), refusal_model="/n")
    assert t.of(RefusalSettings) == RefusalSettings(backend="hf", model="/n")
    r = s.replace(judge_model="x")
    assert (r.of(JudgeSettings).model, s.of(JudgeSettings).model, r.of(RefusalSettings).backend) == (
        "x",
        "m",
        "learned",
    )
    assert EvaluatorSettings(judge_model="m") == EvaluatorSettings(JudgeSettings(model="m"))
    assert hash(EvaluatorSettings(judge_model="m")) == hash(EvaluatorSettings(JudgeSettings(model="m")))
    assert EvaluatorSettings(judge_model="m") != EvaluatorSettings()
    with pytest.raises(AttributeError, match="immutable"):
        s.judge_model = "y"  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.of(JudgeSettings).model = "y"  # type: ignore[misc]


def test_bundle_refuses_unknown_keys_and_types() -> None:
    with pytest.raises(TypeError, match=r"unknown evaluator setting 'judge_modle'; known settings: .*judge_model"):
        EvaluatorSettings(judge_modle="m")

    @dataclass(frozen=True)
    class Stray:
        x: int = 0

    with pytest.raises(TypeError, match="Stray is not a settings family"):
        EvaluatorSettings(Stray())
    with pytest.raises(TypeError, match="Stray is not a settings family"):
        EvaluatorSettings().of(Stray)


def test_family_declarations_are_checked() -> None:
    with pytest.raises(KeyError, match="TRUSTWATCH_NOPE is not declared"):
        var("TRUSTWATCH_NOPE", str)

    class NotADataclass:
        pass

    with pytest.raises(TypeError, match="is a dataclass"):
        family(NotADataclass)

    @dataclass(frozen=True)
    class Undeclared:
        x: int = 0

    with pytest.raises(TypeError, match=r"Undeclared.x: declare it with var\(...\) or code\(...\)"):
        family(Undeclared)

    @dataclass(frozen=True)
    class BadReference:
        y: int = code(0, "y_test")
        reference_set = {"z": 1}

    with pytest.raises(TypeError, match="names 'z', which is not a field"):
        family(BadReference)
    assert "BadReference" not in FAMILIES.known()


def test_settings_from_env_reads_each_family_from_its_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRUSTWATCH_JUDGE_CONCURRENCY", "7")
    clean_env.setenv("TRUSTWATCH_PERSPECTIVE_QPS", "2.5")
    clean_env.setenv("TRUSTWATCH_REMOTE_MAX_RETRIES", "0")
    clean_env.setenv("TRUSTWATCH_EMBEDDING_BACKEND", "openai")
    clean_env.setenv("TRUSTWATCH_REFUSAL_BACKEND", "hf")
    s = settings_from_env(refusal_backend="learned", refusal_model=None)
    assert s.of(JudgeSettings).concurrency == 7
    assert s.of(ToxicitySettings).perspective_qps == 2.5
    assert s.of(RemoteSettings).max_retries == 0
    assert s.of(EmbeddingSettings).backend == "openai"
    assert s.of(RefusalSettings).backend == "learned"  # a flag wins over the variable
    clean_env.setenv("TRUSTWATCH_JUDGE_TIMEOUT_S", "soon")
    with pytest.raises(SettingsError, match="TRUSTWATCH_JUDGE_TIMEOUT_S='soon' is not a valid float"):
        settings_from_env()


def test_reference_judge_set_applies_each_familys_defaults_unless_set(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRUSTWATCH_JUDGES", "reference")
    clean_env.setenv("TRUSTWATCH_JUDGE_MAX_TOKENS", "64")  # explicit, even though it is the default
    s = settings_from_env()
    assert s.of(RefusalSettings) == RefusalSettings(backend="hf", model="LibrAI/longformer-harmful-ro")
    assert (s.of(EmbeddingSettings).backend, s.of(EmbeddingSettings).model) == ("openai", "text-embedding-ada-002")
    assert (s.of(JudgeSettings).model, s.of(JudgeSettings).max_tokens) == ("gpt-4-1106-preview", 64)
    assert s.of(ToxicitySettings) == ToxicitySettings()  # the reference set changes nothing here
    clean_env.setenv("TRUSTWATCH_JUDGES", "gpt")
    with pytest.raises(SettingsError, match="TRUSTWATCH_JUDGES='gpt': use one of default, reference"):
        settings_from_env()


def test_each_evaluator_is_built_from_its_own_family() -> None:
    s = EvaluatorSettings(
        RefusalSettings(backend="learned"),
        ToxicitySettings(backend="hf", model="/m/tox", label="TOXIC"),
        EmbeddingSettings(backend="openai", model="e3", base_url="http://127.0.0.1:9/v1"),
        JudgeSettings(model="jm", concurrency=3, timeout_s=5.0, max_tokens=7),
        RemoteSettings(max_retries=1, timeout_s=2.0),
        LocalModelSettings(batch_size=5, device="cpu"),
    )
    refusal = create("refusal", s)
    assert (refusal.backend, refusal.batch_size, refusal.device) == ("learned", 5, "cpu")  # type: ignore[attr-defined]
    tox = create("toxicity", s).backend  # type: ignore[attr-defined]
    assert isinstance(tox, HFBackend) and (tox.model, tox.toxic_label, tox.batch_size) == ("/m/tox", "TOXIC", 5)
    persp = create("toxicity", s.replace(toxicity_backend="perspective", perspective_qps=3.0)).backend  # type: ignore[attr-defined]
    assert isinstance(persp, PerspectiveBackend) and (persp.url, persp.timeout_s) == (
        ToxicitySettings().perspective_url,
        2.0,
    )
    emb = create("embedding", s).backend  # type: ignore[attr-defined]
    assert isinstance(emb, OpenAIBackend) and emb.endpoint.timeout_s == 2.0 and emb.endpoint.policy.retries == 1
    local = create("persona_similarity", s.replace(embedding_backend="local", embedding_model="/m/e")).backend  # type: ignore[attr-defined]
    assert isinstance(local, LocalBackend) and (local.model_name, local.batch_size, local.device) == ("/m/e", 5, "cpu")
    judge = create("llm_judge.squad", s)
    assert (judge.model, judge.concurrency, judge.max_tokens) == ("jm", 3, 7)  # type: ignore[attr-defined]
    assert judge.endpoint.timeout_s == 5.0 and judge.endpoint.policy.retries == 1  # type: ignore[attr-defined]
