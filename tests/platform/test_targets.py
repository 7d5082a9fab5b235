"""Targets: rate-limit ceilings (``rpm``, ``tpm``) of API targets."""

from __future__ import annotations

import pytest

from trustwatch.platform.targets import TargetError, parse_target, parse_targets


def test_an_openai_target_takes_rpm_and_tpm() -> None:
    t = parse_target("openai:gpt-x@https://api.example/v1?key_env=MY_API_KEY&rpm=500&tpm=90000&name=gx")
    assert (t.name, t.model, t.base_url, t.api_key_env) == ("gx", "gpt-x", "https://api.example/v1", "MY_API_KEY")
    assert (t.rpm, t.tpm) == (500, 90000)
    only = parse_target("openai:m@http://127.0.0.1:8000/v1?tpm=1000")
    assert (only.rpm, only.tpm) == (0, 1000)


def test_without_ceilings_nothing_changes() -> None:
    t = parse_target("openai:m@http://127.0.0.1:8000/v1")
    assert (t.rpm, t.tpm) == (0, 0)


def test_ceilings_do_not_change_a_targets_identity() -> None:
    # Rate limits change how fast a run goes, not what it measures: the run key is the same.
    plain = parse_target("openai:m@http://127.0.0.1:8000/v1?name=n")
    paced = parse_target("openai:m@http://127.0.0.1:8000/v1?name=n&rpm=60&tpm=6000")
    assert plain.describe() == paced.describe()


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "lots", "1e3", "²"])
def test_a_bad_ceiling_says_what_is_expected(value: str) -> None:
    with pytest.raises(TargetError, match="rpm must be a positive whole number of requests per minute"):
        parse_target(f"openai:m@http://127.0.0.1:8000/v1?rpm={value}&tpm=100")
    with pytest.raises(TargetError, match="tpm must be a positive whole number of tokens per minute"):
        parse_target(f"openai:m@http://127.0.0.1:8000/v1?tpm={value}")


def test_a_vllm_target_refuses_ceilings() -> None:
    with pytest.raises(TargetError, match="apply to API targets"):
        parse_target("vllm:tiny-random?rpm=10")


def test_unknown_options_are_still_refused_and_the_help_names_the_ceilings() -> None:
    with pytest.raises(TargetError) as err:
        parse_target("openai:m@http://127.0.0.1:8000/v1?qps=3")
    assert "unknown option(s) qps" in str(err.value) and "rpm=N" in str(err.value)


def test_parse_targets_keeps_the_ceilings() -> None:
    [a, b] = parse_targets(["openai:m@http://h:1/v1?name=a&rpm=10", "openai:m@http://h:1/v1?name=b"])
    assert (a.rpm, b.rpm) == (10, 0)
