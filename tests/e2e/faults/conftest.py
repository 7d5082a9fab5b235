"""Fixtures of the fault campaign: one Kafka broker and one PostgreSQL cluster for all its scenarios
(each scenario has its own topic prefix and database). They are not the session's shared
``kafka_broker`` / ``postgres_url``: the campaign stops, freezes and restarts them, which no other
test should see. At the end the session's results table is printed (and is in out/faults/results.json).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest

from tests.e2e.faults import harness
from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster


@pytest.fixture(scope="session")
def fault_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        print(f"\n[faults] Kafka broker at {broker.bootstrap} in {broker.startup_seconds:.1f} s", file=sys.stderr)
        yield broker


@pytest.fixture(scope="session")
def fault_pg() -> Iterator[PostgresCluster]:
    with PostgresCluster(database="faults") as pg:
        print(f"\n[faults] PostgreSQL on port {pg.port} in {pg.startup_seconds:.1f} s", file=sys.stderr)
        yield pg


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not harness.SESSION_ROWS:
        return
    terminalreporter.section("fault campaign results")
    terminalreporter.write_line(harness.table([asdict(r) for r in harness.SESSION_ROWS]))
    terminalreporter.write_line(f"(JSON: {harness.OUT / 'results.json'})")
