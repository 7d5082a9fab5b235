"""Database URLs are never printed or stored with their password: `trustwatch report <missing id>`,
`trustwatch stack up` output and its state.json (which also records every service's metrics port)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from trustwatch.cli import main
from trustwatch.platform import store as store_module
from trustwatch.tools.stack import local

PASSWORD = "canary-Db-pa55"
PG_URL = f"postgresql+psycopg://tw:{PASSWORD}@db.internal:5432/trustwatch"


def test_safe_db_url() -> None:
    assert local.safe_db_url(PG_URL) == "postgresql+psycopg://tw:***@db.internal:5432/trustwatch"
    assert local.safe_db_url("sqlite:///var/x.db") == "sqlite:///var/x.db"
    assert PASSWORD not in local.safe_db_url(f"no-such-scheme-%%://tw:{PASSWORD}@h/db")


def test_report_of_a_missing_run_hides_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = store_module.Store

    class PasswordStore(real):
        """Reports the PostgreSQL URL it was given, but keeps its rows in SQLite."""

        def __init__(self, url: str) -> None:
            super().__init__(f"sqlite:///{tmp_path}/r.db")
            self.url = url

    monkeypatch.setattr(store_module, "Store", PasswordStore)
    assert main(["report", "missing-run", "--db", PG_URL]) == 2
    out = capsys.readouterr()
    assert "no run 'missing-run'" in out.err and "tw:***@db.internal" in out.err
    assert PASSWORD not in out.err + out.out


def test_stack_up_output_and_state_file_hide_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    spawned: dict[str, list[str]] = {}

    def fake_spawn(name: str, args: list[str], d: Path, env: dict[str, str]) -> int:
        assert env["TRUSTWATCH_DB_URL"] == PG_URL  # the services themselves still get the real URL
        proc = subprocess.Popen(["sleep", "60"])
        started.append(proc)
        spawned[name] = args
        return proc.pid

    monkeypatch.setattr(local, "_spawn", fake_spawn)
    monkeypatch.setattr(local, "_wait_http", lambda *a, **k: None)
    d = tmp_path / "stack"
    try:
        assert (
            main(
                [
                    "stack",
                    "up",
                    "--dir",
                    str(d),
                    "--db",
                    PG_URL,
                    "--bootstrap",
                    "127.0.0.1:1",
                    "--metrics-base",
                    "9300",
                    "--target",
                    "vllm:a",
                    "--target",
                    "vllm:b",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        state_text = (d / "state.json").read_text()
        assert PASSWORD not in out and PASSWORD not in state_text
        printed, state = json.loads(out), json.loads(state_text)
        assert printed["db"] == state["db_url"] == "postgresql+psycopg://tw:***@db.internal:5432/trustwatch"
        ports = state["metrics_ports"]
        assert (
            set(ports) == set(state["services"]) == {"judge", "aggregator", "dispatcher", "generator-0", "generator-1"}
        )
        assert printed["metrics_ports"] == ports
        assert len(set(ports.values())) == len(ports)
        for name, args in spawned.items():  # the recorded port is the one the service was started with
            assert args[args.index("--metrics-port") + 1] == str(ports[name])
        assert local.load_state(d).metrics_ports == ports
    finally:
        assert main(["stack", "down", "--dir", str(d)]) == 0
        for p in started:
            p.wait(timeout=30)
