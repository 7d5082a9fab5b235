"""Session fixtures that start the real parts once per test run (wired in tests/conftest.py).

- ``kafka_broker``: the bootstrap address ("127.0.0.1:PORT") of a single-node KRaft broker.
- ``postgres_url``: a SQLAlchemy URL (``postgresql+psycopg://...``) of an empty database in a
  throw-away PostgreSQL cluster.

A part that cannot start fails the tests that use it (with its log tail); it never skips them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster


def _report(what: str, seconds: float) -> None:
    # Shown with -s or on failure; start-up time of the real parts is worth watching in CI.
    print(f"\n[harness] {what} started in {seconds:.1f} s", file=sys.stderr)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    with KafkaBroker() as broker:
        _report(f"Kafka broker at {broker.bootstrap}", broker.startup_seconds)
        yield broker.bootstrap


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with PostgresCluster() as pg:
        _report(f"PostgreSQL on port {pg.port}", pg.startup_seconds)
        yield pg.url
