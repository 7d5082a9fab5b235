"""The aggregator HTTP API: /runs and /report need the bearer token when one is configured;
/metrics, /healthz and /readyz stay open (Prometheus and the kubelet send no token)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import Aggregator, serve_http
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics

TOKEN = "tok-3b9c1e7a55"


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _serve(tmp_path, token: str) -> Iterator[str]:
    registry = CollectorRegistry()
    store = Store(f"sqlite:///{tmp_path}/agg.db")
    server = serve_http(Aggregator(store, ServiceMetrics(registry)), registry, "127.0.0.1", 0, token=token)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        store.close()


@pytest.fixture
def secured(tmp_path) -> Iterator[str]:
    yield from _serve(tmp_path, TOKEN)


@pytest.fixture
def open_api(tmp_path) -> Iterator[str]:
    yield from _serve(tmp_path, "")


@pytest.mark.parametrize("path", ["/runs", "/report?run=x", "/compare?run=x"])
def test_protected_paths_refuse_missing_or_wrong_tokens(secured: str, path: str) -> None:
    for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1]):
        status, body = _get(secured + path, token)
        assert status == 401, (token, status)
        assert TOKEN.encode() not in body
    # the scheme matters too: the bare token, or Basic, is not enough
    for header in (TOKEN, f"Basic {TOKEN}"):
        req = urllib.request.Request(secured + path, headers={"Authorization": header})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401


def test_the_right_token_is_let_through(secured: str) -> None:
    assert _get(secured + "/runs", TOKEN) == (200, b"[]")
    assert _get(secured + "/report?run=nope", TOKEN)[0] == 404  # authorized; the run just does not exist


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_probes_and_metrics_stay_open(secured: str, path: str) -> None:
    assert _get(secured + path)[0] == 200


def test_without_a_token_configured_the_api_is_open(open_api: str) -> None:
    assert _get(open_api + "/runs") == (200, b"[]")
