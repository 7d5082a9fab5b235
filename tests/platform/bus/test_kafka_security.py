"""Kafka client security settings come from the declared TRUSTWATCH_KAFKA_* variables and reach the
producer, the consumers and the admin client (checked on the config each client is built with; no
broker with SASL is needed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from trustwatch.platform import config
from trustwatch.platform.bus import kafka as kafka_bus
from trustwatch.platform.bus.kafka import KafkaBus, security_options

PASSWORD = "canary-sasl-pw-42"
VARS = [v for v in config.VARIABLES if v.startswith("TRUSTWATCH_KAFKA_") and v != "TRUSTWATCH_KAFKA_BOOTSTRAP"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in VARS:
        monkeypatch.delenv(v, raising=False)


def _sasl_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "scram-sha-512",
        "SASL_USERNAME": "tw",
        "SASL_PASSWORD": PASSWORD,
        "SSL_CAFILE": "/etc/kafka/ca.pem",
        "SSL_CERTFILE": "/etc/kafka/client.pem",
        "SSL_KEYFILE": "/etc/kafka/client.key",
    }.items():
        monkeypatch.setenv(f"TRUSTWATCH_KAFKA_{k}", v)


def test_the_variables_are_declared() -> None:
    assert {
        "TRUSTWATCH_KAFKA_SECURITY_PROTOCOL",
        "TRUSTWATCH_KAFKA_SASL_MECHANISM",
        "TRUSTWATCH_KAFKA_SASL_USERNAME",
        "TRUSTWATCH_KAFKA_SASL_PASSWORD",
        "TRUSTWATCH_KAFKA_SSL_CAFILE",
        "TRUSTWATCH_KAFKA_SSL_CERTFILE",
        "TRUSTWATCH_KAFKA_SSL_KEYFILE",
    } <= set(VARS)
    assert config.VARIABLES["TRUSTWATCH_KAFKA_SECURITY_PROTOCOL"].default == "PLAINTEXT"


def test_plaintext_by_default() -> None:
    assert security_options() == {}
    bus = KafkaBus("127.0.0.1:1")
    assert "security_protocol" not in bus._client_options(KafkaProducer)


def test_sasl_ssl_options(monkeypatch: pytest.MonkeyPatch) -> None:
    _sasl_ssl(monkeypatch)
    assert security_options() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tw",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_check_hostname": True,
    }


def test_other_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SECURITY_PROTOCOL", "ssl")
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SSL_CAFILE", "/ca.pem")
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SASL_PASSWORD", PASSWORD)  # not used without SASL
    assert security_options() == {"security_protocol": "SSL", "ssl_cafile": "/ca.pem", "ssl_check_hostname": True}
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SASL_USERNAME", "tw")
    opts = security_options()
    assert opts["sasl_mechanism"] == "PLAIN" and opts["sasl_plain_password"] == PASSWORD
    assert "ssl_cafile" not in opts


def test_bad_settings_are_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValueError, match="TRUSTWATCH_KAFKA_SECURITY_PROTOCOL"):
        security_options()
    with pytest.raises(SystemExit):
        KafkaBus("127.0.0.1:1")
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValueError, match="TRUSTWATCH_KAFKA_SASL_PASSWORD") as err:
        security_options()
    assert PASSWORD not in str(err.value)


def test_producer_consumer_and_admin_all_get_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _sasl_ssl(monkeypatch)
    built: dict[str, dict[str, Any]] = {}

    def fake(real: Any) -> Any:
        class Fake:
            DEFAULT_CONFIG = real.DEFAULT_CONFIG

            def __init__(self, **kw: Any) -> None:
                built[real.__name__] = kw

            def subscribe(self, *a: Any, **k: Any) -> None: ...
            def create_topics(self, request: dict[str, Any], raise_errors: bool = False) -> dict[str, Any]:
                return {"topics": [{"name": t, "error_code": 0} for t in request]}

            def wait_for_topics(self, *a: Any, **k: Any) -> None: ...
            def close(self, *a: Any, **k: Any) -> None: ...
            def flush(self, *a: Any, **k: Any) -> None: ...

        return Fake

    for real in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        monkeypatch.setattr(kafka_bus, real.__name__, fake(real))
    caplog.set_level(logging.DEBUG)
    bus = KafkaBus("broker:9093", max_poll_interval_ms=123_000)
    bus.producer()
    bus.consumer(["t"], "g")
    assert set(built) == {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"}
    for name, kw in built.items():
        assert kw["security_protocol"] == "SASL_SSL", name
        assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["sasl_plain_username"] == "tw", name
        assert kw["sasl_plain_password"] == PASSWORD, name
        assert kw["ssl_cafile"] == "/etc/kafka/ca.pem" and kw["ssl_keyfile"] == "/etc/kafka/client.key", name
    assert built["KafkaConsumer"]["max_poll_interval_ms"] == 123_000  # explicit options still pass
    assert PASSWORD not in caplog.text


def test_explicit_keyword_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _sasl_ssl(monkeypatch)
    bus = KafkaBus("127.0.0.1:1", security_protocol="PLAINTEXT")
    assert bus._client_options(KafkaConsumer)["security_protocol"] == "PLAINTEXT"
