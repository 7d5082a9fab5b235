"""The evaluator gRPC service over TLS and mutual TLS, with a real server on loopback and a
throw-away CA made in the test; and loopback as the default bind address."""

from __future__ import annotations

import datetime
import inspect
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustwatch.benchmark.evaluators.base import EvalItem
from trustwatch.judge.client import GrpcEvaluators, LocalEvaluators
from trustwatch.judge.grpc_server import ServerTLS, serve
from trustwatch.platform import config

ITEM = EvalItem("j1", "truthfulness/external", "p", "Answer: Refutes.")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(d: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (d / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.crt signs server.crt (localhost, 127.0.0.1) and client.crt; other-ca.crt signs rogue.crt."""
    d = tmp_path_factory.mktemp("pki")
    for ca_name, leaves in (("ca", ("server", "client")), ("other-ca", ("rogue",))):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _cert(f"trustwatch test {ca_name}", ca_key, None, ca=True)
        _write(d, ca_name, ca_cert, ca_key)
        for leaf in leaves:
            key = ec.generate_private_key(ec.SECP256R1())
            _write(d, leaf, _cert(leaf, key, (ca_cert.subject, ca_key), server=leaf == "server"), key)
    return d


def _server(tls: ServerTLS | None) -> Iterator[str]:
    srv, port = serve(LocalEvaluators(), host="127.0.0.1", port=0, tls=tls)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.stop(0)


@pytest.fixture(scope="module")
def tls_server(pki: Path) -> Iterator[str]:
    yield from _server(ServerTLS(str(pki / "server.crt"), str(pki / "server.key")))


@pytest.fixture(scope="module")
def mtls_server(pki: Path) -> Iterator[str]:
    yield from _server(ServerTLS(str(pki / "server.crt"), str(pki / "server.key"), str(pki / "ca.crt")))


def _works(client: GrpcEvaluators) -> bool:
    try:
        (v,) = client.evaluate("fact_check", [ITEM])
        return v.label == "REFUTE"
    except grpc.RpcError:
        return False
    finally:
        client.close()


def test_tls_server_talks_to_a_client_that_trusts_its_ca(tls_server: str, pki: Path) -> None:
    client = GrpcEvaluators(tls_server, timeout_s=5, ca_file=str(pki / "ca.crt"))
    assert client.tls and _works(client)


def test_tls_server_refuses_plaintext_and_untrusting_clients(tls_server: str, pki: Path) -> None:
    assert not _works(GrpcEvaluators(tls_server, timeout_s=2))
    assert not _works(GrpcEvaluators(tls_server, timeout_s=2, ca_file=str(pki / "other-ca.crt")))


def test_mtls_needs_a_client_certificate_from_the_configured_ca(mtls_server: str, pki: Path) -> None:
    ca = str(pki / "ca.crt")
    assert _works(
        GrpcEvaluators(
            mtls_server, timeout_s=5, ca_file=ca, cert_file=str(pki / "client.crt"), key_file=str(pki / "client.key")
        )
    )
    assert not _works(GrpcEvaluators(mtls_server, timeout_s=2, ca_file=ca))  # no client certificate
    assert not _works(
        GrpcEvaluators(
            mtls_server, timeout_s=2, ca_file=ca, cert_file=str(pki / "rogue.crt"), key_file=str(pki / "rogue.key")
        )
    )  # signed by another CA
    assert not _works(GrpcEvaluators(mtls_server, timeout_s=2))  # plaintext


def test_half_configurations_are_refused(pki: Path) -> None:
    assert ServerTLS.from_files("", "", "") is None
    with pytest.raises(ValueError, match="TRUSTWATCH_GRPC_TLS_KEY"):
        ServerTLS.from_files(str(pki / "server.crt"), "")
    with pytest.raises(ValueError, match="TRUSTWATCH_GRPC_TLS_CERT"):
        ServerTLS.from_files("", "", str(pki / "ca.crt"))
    with pytest.raises(ValueError, match="TRUSTWATCH_GRPC_TLS_CLIENT_KEY"):
        GrpcEvaluators("127.0.0.1:1", ca_file=str(pki / "ca.crt"), cert_file=str(pki / "client.crt"))


def test_wiring_reads_the_tls_variables(pki: Path, mtls_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from trustwatch.judge.main import grpc_client, server_tls

    monkeypatch.delenv("TRUSTWATCH_GRPC_TLS_CERT", raising=False)
    monkeypatch.delenv("TRUSTWATCH_GRPC_TLS_KEY", raising=False)
    monkeypatch.delenv("TRUSTWATCH_GRPC_TLS_CLIENT_CA", raising=False)
    assert server_tls() is None
    monkeypatch.setenv("TRUSTWATCH_GRPC_TLS_CERT", str(pki / "server.crt"))
    with pytest.raises(SystemExit, match="TRUSTWATCH_GRPC_TLS_KEY"):
        server_tls()
    monkeypatch.setenv("TRUSTWATCH_GRPC_TLS_KEY", str(pki / "server.key"))
    monkeypatch.setenv("TRUSTWATCH_GRPC_TLS_CLIENT_CA", str(pki / "ca.crt"))
    assert server_tls() == ServerTLS(str(pki / "server.crt"), str(pki / "server.key"), str(pki / "ca.crt"))

    monkeypatch.setenv("TRUSTWATCH_GRPC_TLS_CA", str(pki / "ca.crt"))
    monkeypatch.setenv("TRUSTWATCH_GRPC_TLS_CLIENT_CERT", str(pki / "client.crt"))
    monkeypatch.setenv("TRUSTWATCH_GRPC_TLS_CLIENT_KEY", str(pki / "client.key"))
    assert _works(grpc_client(mtls_server))
    monkeypatch.delenv("TRUSTWATCH_GRPC_TLS_CA")
    monkeypatch.delenv("TRUSTWATCH_GRPC_TLS_CLIENT_CERT")
    monkeypatch.delenv("TRUSTWATCH_GRPC_TLS_CLIENT_KEY")
    plain = grpc_client(mtls_server)
    plain.timeout_s = 2
    assert not plain.tls and not _works(plain)


def test_loopback_is_the_default_bind_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from trustwatch.cli import build_parser

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert config.VARIABLES["TRUSTWATCH_GRPC_HOST"].default == "127.0.0.1"
    monkeypatch.delenv("TRUSTWATCH_GRPC_HOST", raising=False)
    assert build_parser().parse_args(["judge", "serve"]).host is None  # serve_main then uses the variable
    assert config.env("TRUSTWATCH_GRPC_HOST") == "127.0.0.1"
    assert build_parser().parse_args(["judge", "serve", "--host", "0.0.0.0"]).host == "0.0.0.0"
