"""Targets never carry credentials: keys come from ``key_env``, which a pattern limits, and every URL
that reaches a manifest, a run id, a job or an error is credential-free."""

from __future__ import annotations

import json

import pytest

from trustwatch.platform.targets import TargetError, TargetSpec, check_key_env, parse_target, redact_url

CANARY = "canary-s3cr3t-9f8e7d"


@pytest.mark.parametrize(
    "text",
    [
        f"openai:m@https://alice:{CANARY}@gw.example/v1",
        f"openai:m@https://{CANARY}@gw.example/v1",
        f"openai:m@https://alice:{CANARY}@gw.example/v1?key_env=OPENAI_API_KEY&name=n",
    ],
)
def test_user_info_in_the_url_is_refused_without_quoting_it(text: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_target(text)
    msg = str(err.value)
    assert "credentials in the URL" in msg and "key_env" in msg
    assert CANARY not in msg and "alice" not in msg


@pytest.mark.parametrize("param", ["api_key", "key", "token", "access_token", "API_KEY", "apikey", "password"])
def test_credential_query_parameters_are_refused(param: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_target(f"openai:m@https://gw.example/v1?{param}={CANARY}")
    msg = str(err.value)
    assert "credentials in the URL are refused" in msg and "key_env" in msg
    assert CANARY not in msg


@pytest.mark.parametrize("path", [f"/v1/sk-{CANARY}", f"/v1/key={CANARY}", f"/v1;token={CANARY}"])
def test_a_key_in_the_path_is_refused(path: str) -> None:
    with pytest.raises(TargetError) as err:
        parse_target(f"openai:m@https://gw.example{path}")
    assert "credential" in str(err.value) and "key_env" in str(err.value)
    assert CANARY not in str(err.value)


def test_clean_urls_still_parse_and_keep_their_run_identity() -> None:
    t = parse_target("openai:m@http://127.0.0.1:8000/v1?key_env=MY_API_KEY")
    assert t.base_url == "http://127.0.0.1:8000/v1" and t.api_key_env == "MY_API_KEY"
    assert t.describe()["base_url"] == t.base_url  # unchanged: run ids of existing runs stay the same
    # Cloudflare-style gateway paths (32 hex characters) are not mistaken for keys.
    parse_target("openai:m@https://gateway.ai.example/v1/0123456789abcdef0123456789abcdef/gw/openai")


def test_redact_url() -> None:
    assert redact_url(f"https://u:{CANARY}@h:8443/v1?api_key={CANARY}#x") == "https://h:8443/v1"
    assert redact_url("http://h/v1") == "http://h/v1"
    assert redact_url("") == ""


def test_manifest_run_id_and_jobs_are_credential_free(data_dir) -> None:
    """A TargetSpec built in code (not parsed) with credentials still never puts them in a plan."""
    from trustwatch.scheduler.core import plan_run
    from trustwatch.scheduler.suite import parse_suite

    data = data_dir
    suite = parse_suite({"name": "sec", "tasks": [{"task": "safety/misuse", "limit": 3}]})
    dirty = TargetSpec(
        name="t",
        backend="openai",
        model="m",
        base_url=f"https://u:{CANARY}@gw.example/v1",
        api_key_env="OPENAI_API_KEY",
    )
    clean = TargetSpec(
        name="t", backend="openai", model="m", base_url="https://gw.example/v1", api_key_env="OPENAI_API_KEY"
    )
    plan = plan_run(suite, dirty, data)
    assert CANARY not in json.dumps(plan.manifest)
    assert CANARY not in plan.run_id
    assert all(CANARY not in j.SerializeToString().decode("utf-8", "replace") for j in plan.jobs)
    assert plan.manifest["comparable_key"] == plan_run(suite, clean, data).manifest["comparable_key"]


def test_key_env_default_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTWATCH_KEY_ENV_ALLOW", raising=False)
    for ok in ("OPENAI_API_KEY", "GW_API_KEY", "HF_TOKEN"):
        assert check_key_env(ok) == ok
        assert parse_target(f"openai:m@http://h/v1?key_env={ok}").api_key_env == ok
    for bad in ("HOME", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "openai_api_key"):
        with pytest.raises(TargetError) as err:
            parse_target(f"openai:m@http://h/v1?key_env={bad}")
        assert "TRUSTWATCH_KEY_ENV_ALLOW" in str(err.value) and bad in str(err.value)


def test_key_env_never_names_trustwatch_own_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_KEY_ENV_ALLOW", "*")
    for own in ("TRUSTWATCH_API_TOKEN", "TRUSTWATCH_KAFKA_SASL_PASSWORD", "TRUSTWATCH_DB_URL"):
        with pytest.raises(TargetError, match="trustwatch's own settings"):
            parse_target(f"openai:m@http://h/v1?key_env={own}")
    assert parse_target("openai:m@http://h/v1?key_env=HOME").api_key_env == "HOME"


def test_key_env_pattern_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_KEY_ENV_ALLOW", " GATEWAY_* , X_KEY")
    assert parse_target("openai:m@http://h/v1?key_env=GATEWAY_SECRET").api_key_env == "GATEWAY_SECRET"
    assert parse_target("openai:m@http://h/v1?key_env=X_KEY").api_key_env == "X_KEY"
    with pytest.raises(TargetError, match="TRUSTWATCH_KEY_ENV_ALLOW"):
        parse_target("openai:m@http://h/v1?key_env=OPENAI_API_KEY")
    # An explicit argument wins over the environment.
    assert check_key_env("OPENAI_API_KEY", allow="*_API_KEY") == "OPENAI_API_KEY"
    monkeypatch.setenv("TRUSTWATCH_KEY_ENV_ALLOW", "")
    with pytest.raises(TargetError, match="none allowed"):
        parse_target("openai:m@http://h/v1")
