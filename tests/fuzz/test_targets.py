"""Fuzzing target strings (platform/targets.py): parse_target over arbitrary strings and over strings
built from the grammar's pieces raises TargetError only, never accepts credentials in the URL, and
never quotes a query part or user info in its error."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from tests.fuzz._fuzz import any_text, fuzz, texts
from trustwatch.platform.targets import SECRET_PARAMS, TargetError, check_key_env, parse_target, redact_url

CANARY = "s3cr3tCANARY"
ALLOW = "*_API_KEY,*_TOKEN"

pieces = st.sampled_from(
    [
        "vllm:",
        "openai:",
        "echo:",
        "x:",
        ":",
        "@",
        "?",
        "&",
        "=",
        "#",
        "/",
        "%",
        "%40",
        "%zz",
        "http://",
        "https://",
        "ftp://",
        "[::1",
        "]",
        "[::1]:99999",
        "host",
        "host:80",
        "localhost:8000/v1",
        f"https://u:{CANARY}@",
        "name=",
        "name=a b",
        "key_env=",
        "key_env=MY_API_KEY",
        "key_env=TRUSTWATCH_DB_URL",
        "rpm=",
        "rpm=10",
        "rpm=-1",
        "tpm=0",
        "tpm=١٢",
        f"sk-{CANARY}abcdefgh",
        f"api_key={CANARY}",
        f"token={CANARY}",
        "\x00",
        "\ud800",
        " ",
        "\n",
    ]
)
grammar = st.lists(st.one_of(pieces, st.text(max_size=6)), max_size=12).map("".join)


def _check(text: str) -> None:
    try:
        spec = parse_target(text, key_env_allow=ALLOW)
    except TargetError as exc:
        msg = str(exc)
        assert msg
        assert CANARY not in msg, f"error quotes a credential: {msg!r}"
        return
    assert spec.backend in ("vllm", "openai", "echo")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", spec.name), spec.name
    assert spec.rpm >= 0 and spec.tpm >= 0
    if spec.backend == "openai":
        assert spec.base_url.startswith(("http://", "https://"))
        assert CANARY not in redact_url(spec.base_url)
        assert CANARY not in str(spec.describe())
        check_key_env(spec.api_key_env, ALLOW)


def test_parse_target_over_arbitrary_strings(budget: str) -> None:
    @fuzz(budget, 80, 600, texts)
    def parses_or_says_why(text: str) -> None:
        _check(text)


def test_parse_target_over_grammar_pieces(budget: str) -> None:
    @fuzz(budget, 120, 900, grammar)
    def parses_or_says_why(text: str) -> None:
        _check(text)


def test_credentials_in_the_url_are_always_refused(budget: str) -> None:
    secret = st.sampled_from(sorted(SECRET_PARAMS)).flatmap(lambda k: st.sampled_from([k, k.upper(), k.title()]))

    @fuzz(budget, 20, 150, secret, st.sampled_from(["vllm:m", "openai:m@http://h/v1", "echo:e"]), any_text)
    def refused(param: str, head: str, value: str) -> None:
        for text in (f"{head}?{param}={CANARY}{value}", f"{head}?name=n&{param}={CANARY}"):
            try:
                parse_target(text, key_env_allow=ALLOW)
            except TargetError as exc:
                assert CANARY not in str(exc)
            else:
                raise AssertionError(f"accepted a credential in {text!r}")


def test_check_key_env_and_redact_url_over_arbitrary_strings(budget: str) -> None:
    @fuzz(budget, 50, 300, texts)
    def total(text: str) -> None:
        try:
            assert check_key_env(text, ALLOW) == text
        except TargetError as exc:
            assert str(exc)
        out = redact_url(text)
        assert isinstance(out, str)
        assert "?" not in out or "?" not in text.split("#", 1)[0] or out == text
