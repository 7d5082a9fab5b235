"""Every fuzz test takes ``budget``: "fast" (the default test run) or "many" (marked slow; CI runs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trustwatch.benchmark import tasks as task_registry


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "budget" in metafunc.fixturenames:
        metafunc.parametrize(
            "budget",
            [pytest.param("fast", id="fast"), pytest.param("many", id="many", marks=pytest.mark.slow)],
        )


@pytest.fixture(scope="session")
def seeds(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Three real records of each task's dataset file, the starting points of record mutations."""
    out = {}
    for name, task in sorted(task_registry.known().items()):
        records = json.loads((data_dir / task.dataset).read_text(encoding="utf-8"), strict=False)
        out[name] = records[:2] + records[-1:]
    return out


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.fuzz._fuzz import CASES

    if CASES:
        by_budget: dict[str, int] = {}
        for (_, budget), n in CASES.items():
            by_budget[budget] = by_budget.get(budget, 0) + n
        terminalreporter.write_line(
            "fuzz cases run (max_examples asked for): " + ", ".join(f"{b}={n}" for b, n in sorted(by_budget.items()))
        )
